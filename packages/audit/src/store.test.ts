import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { FakeClock, PhaselockError } from "@phaselock/core";
import { createDb, type Db, migrate, queryRows } from "@phaselock/db";
import { dbBackends, type TestDb } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { type SQL, sql, TransactionRollbackError } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { benchAppend } from "./bench.ts";
import { GENESIS, normalizeEvent, prepareEvent } from "./chain.ts";
import { runExportCli } from "./cli/export.ts";
import { runVerifyCli } from "./cli/verify.ts";
import { verifyExport } from "./export-format.ts";
import type { AuditEventInput } from "./sink.ts";
import {
  appendEvents,
  appendInTransaction,
  appendPrepared,
  exportEvents,
  listEvents,
  verifyStored,
} from "./store.ts";
import { sampleInput } from "./test-chain.ts";
import { disableAuditTriggers } from "./testing.ts";
import { AuditQueueFullError, BatchAuditWriter } from "./writer.ts";

const inputs = (n: number, from = 0): AuditEventInput[] =>
  Array.from({ length: n }, (_, i) => sampleInput(from + i));

async function countRows(db: Db): Promise<number> {
  const [row] = await queryRows<{ n: number }>(db, sql`select count(*)::int as n from audit_events`);
  return row?.n ?? 0;
}

async function headSeq(db: Db): Promise<number> {
  const [row] = await queryRows<{ s: number }>(
    db,
    sql`select coalesce(max(seq), 0)::int as s from audit_events`,
  );
  return row?.s ?? 0;
}

/**
 * Runs `fn` after `change` inside a transaction that is rolled back, so the table is left intact.
 * The change is made as the database's owner would: with the append-only triggers switched off.
 */
async function whileTampered<T>(db: Db, change: SQL, fn: (tx: Db) => Promise<T>): Promise<T> {
  let out: { value: T } | undefined;
  try {
    await db.transaction(async (tx) => {
      await disableAuditTriggers(tx);
      await tx.execute(change);
      out = { value: await fn(tx) };
      tx.rollback();
    });
  } catch (err) {
    if (!(err instanceof TransactionRollbackError)) throw err;
  }
  if (!out) throw new Error("unreachable: the transaction body did not finish");
  return out.value;
}

/** `db` with its postgres.js client's `begin` and `unsafe` calls counted. */
function countingClient(db: Db): { spied: Db; calls: { begin: number; unsafe: number } } {
  const calls = { begin: 0, unsafe: 0 };
  const client = (db as unknown as { $client: Record<string | symbol, unknown> }).$client;
  const counting = new Proxy(client, {
    get(target, key) {
      const v = Reflect.get(target, key) as unknown;
      if (typeof v !== "function") return v;
      return (...args: unknown[]) => {
        if (key === "begin" || key === "unsafe") calls[key]++;
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  const spied = new Proxy(db, {
    get: (target, key) => (key === "$client" ? counting : Reflect.get(target, key)),
  });
  return { spied, calls };
}

function collect(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on("data", (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString("utf8") };
}

for (const backend of dbBackends) {
  describeIntegration(`audit store (${backend.name})`, backend.needs, () => {
    let testDb: TestDb;
    let db: Db;
    let tmp: string;

    beforeAll(async () => {
      testDb = await backend.open();
      db = testDb.handle.db;
      tmp = await mkdtemp(join(tmpdir(), "phaselock-audit-"));
    });
    afterAll(async () => {
      await testDb?.drop();
      if (tmp) await rm(tmp, { recursive: true, force: true });
    });

    it("starts empty: verifies with GENESIS as head", async () => {
      expect(await verifyStored(db)).toEqual({ ok: true, events: 0, head: GENESIS });
      expect(await listEvents(db)).toEqual({ items: [], nextCursor: null });
    });

    describe("tampering with one stored column fails verification at that event", () => {
      let k: number;
      beforeAll(async () => {
        const r = await appendEvents(db, inputs(30, 1));
        k = r.firstSeq + 12;
      });

      const changes: [string, (k: number) => SQL][] = [
        ["id", (k) => sql`update audit_events set id = id || 'x' where seq = ${k}`],
        ["at", (k) => sql`update audit_events set at = at + interval '1 millisecond' where seq = ${k}`],
        ["type", (k) => sql`update audit_events set type = 'link.redeemed' where seq = ${k}`],
        ["actor", (k) => sql`update audit_events set actor = 'mallory' where seq = ${k}`],
        ["actor to null", (k) => sql`update audit_events set actor = null where seq = ${k}`],
        ["campaign_id", (k) => sql`update audit_events set campaign_id = 'labour-ge-2019' where seq = ${k}`],
        ["link_id", (k) => sql`update audit_events set link_id = 'lnk_other' where seq = ${k}`],
        [
          "decision",
          (k) =>
            sql`update audit_events set decision = case when decision = 'allow' then 'deny' else 'allow' end where seq = ${k}`,
        ],
        ["reason", (k) => sql`update audit_events set reason = 'nothing to see' where seq = ${k}`],
        ["data", (k) => sql`update audit_events set data = data || '{"n": -1}'::jsonb where seq = ${k}`],
        [
          "data (nested)",
          (k) => sql`update audit_events set data = jsonb_set(data, '{nested,a}', '1') where seq = ${k}`,
        ],
        ["hash", (k) => sql`update audit_events set hash = repeat('f', 64) where seq = ${k}`],
      ];
      it.each(changes)("%s", async (_name, change) => {
        const r = await whileTampered(db, change(k), (tx) => verifyStored(tx, { batchSize: 50 }));
        expect(r).toMatchObject({ ok: false, events: k - 1, brokenAt: { seq: k, reason: "hash_mismatch" } });
      });

      it("prev_hash", async () => {
        const change = sql`update audit_events set prev_hash = repeat('0', 64) where seq = ${k}`;
        const r = await whileTampered(db, change, (tx) => verifyStored(tx));
        expect(r).toMatchObject({ ok: false, brokenAt: { seq: k, reason: "prev_mismatch" } });
      });

      it("seq (the event moves away: a gap at the next one, as for a deletion)", async () => {
        const change = sql`update audit_events set seq = seq + 1000000 where seq = ${k}`;
        const r = await whileTampered(db, change, (tx) => verifyStored(tx));
        expect(r).toMatchObject({ ok: false, events: k - 1, brokenAt: { seq: k + 1, reason: "seq_gap" } });
      });

      it("a deleted event fails at the next one", async () => {
        const r = await whileTampered(db, sql`delete from audit_events where seq = ${k}`, (tx) =>
          verifyStored(tx),
        );
        expect(r).toMatchObject({ ok: false, events: k - 1, brokenAt: { seq: k + 1, reason: "seq_gap" } });
      });

      it("a deleted first event fails at seq 2", async () => {
        const r = await whileTampered(db, sql`delete from audit_events where seq = 1`, (tx) =>
          verifyStored(tx),
        );
        expect(r).toMatchObject({ ok: false, events: 0, brokenAt: { seq: 2, reason: "seq_gap" } });
      });

      it("a forged event below seq 1 fails at once", async () => {
        const forged = sql`insert into audit_events (seq, id, at, type, data, prev_hash, hash, leaf_hash)
          values (0, 'evt_forged', now(), 'access', '{}', ${GENESIS}, ${GENESIS}, ${GENESIS})`;
        const r = await whileTampered(db, forged, (tx) => verifyStored(tx));
        expect(r).toMatchObject({ ok: false, events: 0, brokenAt: { seq: 0, reason: "seq_gap" } });
      });

      it("the untouched table still verifies", async () => {
        expect(await verifyStored(db)).toMatchObject({ ok: true, events: await countRows(db) });
      });
    });

    it("appends 1000 events as one verifiable chain, streamed in pages", async () => {
      const before = await headSeq(db);
      const r = await appendEvents(db, inputs(1_000));
      expect(r.headSeq).toBe(before + 1_000);
      expect(r.firstSeq).toBe(before + 1);
      expect(r.ids).toHaveLength(1_000);
      expect(r.ids.every((id) => /^evt_[0-9a-z]{9}[\w-]{16}$/.test(id))).toBe(true);
      expect(new Set(r.ids).size).toBe(1_000);
      const verified = await verifyStored(db, { batchSize: 97 });
      expect(verified).toEqual({ ok: true, events: before + 1_000, head: r.head });
    });

    it("round-trips every value exactly, including awkward strings and data", async () => {
      const awkward: AuditEventInput = {
        type: "access",
        at: new Date("2026-02-03T04:05:06.789Z"),
        actor: "nul\u0000 and lone \uD83D surrogate",
        campaignId: `quote " backslash \\ {braces}, NULL, it's '' \\' \\"`,
        linkId: "",
        reason: "NULL",
        data: {
          unicode: "é😀\u2028",
          numbers: [0, -0, 1e21, 5e-324, 0.1 + 0.2, -1.5],
          deep: { z: [{ b: 1, a: 2 }], a: null, __proto__: { x: 1 } },
          "": "empty key",
          bool: false,
          quotes: `it's "quoted" \\ \\\\' E'\\x41' $$`,
        },
      };
      // Once through each way an append is written: the first on the head read under the lock,
      // the second on the head it left (the batch writer's one round trip, `audit_append()`).
      const first = await appendEvents(db, [awkward]);
      await appendPrepared(db, [prepareEvent(awkward)], { seq: first.headSeq, hash: first.head });
      expect(await verifyStored(db)).toMatchObject({ ok: true });
      const stored = (await listEvents(db, { limit: 2 })).items;
      expect(stored.map((e) => e.seq)).toEqual([first.headSeq + 1, first.headSeq]);
      for (const event of stored) {
        const { seq: _s, id: _i, prevHash: _p, hash: _h, ...columns } = event;
        expect(columns).toEqual(normalizeEvent(awkward));
        expect(columns.actor).toBe("nul\uFFFD and lone \uFFFD surrogate");
      }
    });

    it("splits a large append into chunks under the parameter limit, in one transaction", async () => {
      const before = await countRows(db);
      const r = await appendEvents(db, inputs(5_000));
      expect(await countRows(db)).toBe(before + 5_000);
      expect(await verifyStored(db, { batchSize: 5_000 })).toEqual({
        ok: true,
        events: before + 5_000,
        head: r.head,
      });
    });

    it("appends nothing for an empty batch and reports the head", async () => {
      const head = await verifyStored(db);
      const r = await appendEvents(db, []);
      expect(r).toMatchObject({ headSeq: await headSeq(db), ids: [] });
      expect(head.ok && r.head === head.head).toBe(true);
    });

    it("writes nothing when a batch holds an event it cannot store", async () => {
      const before = await countRows(db);
      const bad = { type: "access", at: new Date(Number.NaN) };
      await expect(appendEvents(db, [...inputs(3), bad])).rejects.toThrow(TypeError);
      expect(await countRows(db)).toBe(before);
    });

    it("serialises concurrent writers on separate connections into one chain", async () => {
      const second = testDb.url ? createDb({ databaseUrl: testDb.url, poolSize: 2 }) : null;
      const other = second?.db ?? db;
      try {
        const before = await countRows(db);
        const loop = async (target: Db, offset: number) => {
          for (let i = 0; i < 20; i++) await appendEvents(target, inputs(25, offset + i * 25));
        };
        const writer = (target: Db) => {
          const w = new BatchAuditWriter({
            db: target,
            clock: new FakeClock(),
            maxBatch: 40,
            flushIntervalMs: 1,
          });
          for (const e of inputs(300)) w.record(e);
          return w.close();
        };
        await Promise.all([loop(db, 0), loop(other, 10_000), writer(db), writer(other)]);
        expect(await countRows(db)).toBe(before + 2 * 500 + 2 * 300);
        expect(await verifyStored(db)).toMatchObject({ ok: true, events: before + 1_600 });
      } finally {
        await second?.close();
      }
    });

    describe("appendPrepared on the head a writer last saw", () => {
      it("chains onto the head under the lock when another writer moved it: no fork", async () => {
        const mine = await appendEvents(db, inputs(3));
        const theirs = await appendEvents(db, inputs(4, 50));
        const r = await appendPrepared(db, inputs(5, 100).map(prepareEvent), {
          seq: mine.headSeq,
          hash: mine.head,
        });
        expect(r.firstSeq).toBe(theirs.headSeq + 1);
        expect(await headSeq(db)).toBe(r.headSeq);
        expect(await verifyStored(db)).toMatchObject({ ok: true, head: r.head });
      });

      it("does not trust a head that names the right seq with another hash", async () => {
        const now = await appendEvents(db, inputs(2));
        const r = await appendPrepared(db, inputs(3, 10).map(prepareEvent), {
          seq: now.headSeq,
          hash: "f".repeat(64),
        });
        expect(r.firstSeq).toBe(now.headSeq + 1);
        expect(await verifyStored(db)).toMatchObject({ ok: true, head: r.head });
      });

      if (backend.name === "postgres") {
        it("is one query (no begin, no separate head read) while the head is unchanged", async () => {
          const { spied, calls } = countingClient(db);
          const first = await appendPrepared(spied, inputs(3).map(prepareEvent));
          expect(calls).toEqual({ begin: 1, unsafe: 0 });
          const next = await appendPrepared(spied, inputs(3, 5).map(prepareEvent), {
            seq: first.headSeq,
            hash: first.head,
          });
          expect(calls).toEqual({ begin: 1, unsafe: 1 });
          expect(next.firstSeq).toBe(first.headSeq + 1);
          expect(await verifyStored(db)).toMatchObject({ ok: true, head: next.head });
        });

        it("an append inside a caller's transaction refuses any isolation but READ COMMITTED", async () => {
          const before = await headSeq(db);
          const failure = await db
            .transaction((tx) => appendInTransaction(tx, inputs(2, 90)), {
              isolationLevel: "repeatable read",
            })
            .catch((err: unknown) => err);
          expect(String(failure)).toMatch(/needs READ COMMITTED, not repeatable read/);
          expect(await headSeq(db)).toBe(before);
          await db.transaction((tx) => appendInTransaction(tx, inputs(2, 92)));
          expect(await headSeq(db)).toBe(before + 2);
        });

        it("audit_append() refuses any isolation but READ COMMITTED, before writing anything", async () => {
          const before = await appendPrepared(db, []);
          // A head read at REPEATABLE READ is the one of the transaction's first statement, taken
          // before the lock: a second writer's commit meanwhile would go unseen and fork the chain.
          const message = await db
            .transaction(
              (tx) =>
                tx.execute(
                  sql`select * from public.audit_append(1, ${before.headSeq}::bigint, ${before.head}::text,
                    '{}'::bigint[], '{}'::text[], '{}'::timestamptz[], '{}'::text[], '{}'::text[],
                    '{}'::text[], '{}'::text[], '{}'::text[], '{}'::text[], '{}'::jsonb[], '{}'::text[],
                    '{}'::text[], '{}'::text[])`,
                ),
              { isolationLevel: "repeatable read" },
            )
            .then(
              () => "appended",
              (err: unknown) => String((err as { cause?: unknown }).cause ?? err),
            );
          expect(message).toMatch(/needs READ COMMITTED, not repeatable read/);
          expect(await headSeq(db)).toBe(before.headSeq);
        });

        it("appends on a session whose default isolation is REPEATABLE READ, in four round trips", async () => {
          if (!testDb.url) throw new Error("a Postgres test database has a URL");
          const u = new URL(testDb.url);
          u.searchParams.set("default_transaction_isolation", "repeatable read");
          const strict = createDb({ databaseUrl: u.toString(), poolSize: 1 });
          try {
            const { spied, calls } = countingClient(strict.db);
            const before = await appendPrepared(db, []);
            const r = await appendPrepared(spied, inputs(3, 70).map(prepareEvent), {
              seq: before.headSeq,
              hash: before.head,
            });
            // The prepared call was refused, then the append went in with the isolation set.
            expect(calls).toEqual({ begin: 1, unsafe: 1 });
            expect(r.firstSeq).toBe(before.headSeq + 1);
            expect(await verifyStored(db)).toMatchObject({ ok: true, head: r.head });
          } finally {
            await strict.close();
          }
        });
      }
    });

    describe("BatchAuditWriter", () => {
      it("writes recorded events on its timer", async () => {
        const before = await countRows(db);
        const w = new BatchAuditWriter({ db, clock: new FakeClock(), flushIntervalMs: 1 });
        for (const e of inputs(10)) w.record(e);
        expect(w.pending).toBe(10);
        await expect.poll(() => w.pending, { timeout: 10_000 }).toBe(0);
        expect(await countRows(db)).toBe(before + 10);
        await w.close();
      });

      it("close() writes everything still queued, in batches", async () => {
        const before = await countRows(db);
        const w = new BatchAuditWriter({
          db,
          clock: new FakeClock(),
          maxBatch: 1_000,
          flushIntervalMs: 60_000,
        });
        for (const e of inputs(2_500)) w.record(e);
        await w.close();
        expect(w.pending).toBe(0);
        expect(await countRows(db)).toBe(before + 2_500);
        expect(await verifyStored(db)).toMatchObject({ ok: true });
      });

      it("keeps events the caller mutates after record() as they were recorded", async () => {
        const w = new BatchAuditWriter({ db, clock: new FakeClock(), flushIntervalMs: 60_000 });
        const e = {
          type: "access",
          at: new Date("2026-03-01T00:00:00Z"),
          linkId: "lnk_mutated",
          data: { n: 1 },
        };
        w.record(e);
        e.data.n = 2;
        await w.close();
        const { items } = await listEvents(db, { linkId: "lnk_mutated" });
        expect(items.map((i) => i.data)).toEqual([{ n: 1 }]);
      });

      it("turns unhealthy when writes fail for longer than failAfterMs", async () => {
        const clock = new FakeClock("2026-01-01T00:00:00Z");
        // Postgres: a closed connection. PGlite (one in-process instance): the table is gone.
        const closed = testDb.url ? createDb({ databaseUrl: testDb.url }) : null;
        await closed?.close();
        if (!closed) await db.execute(sql`alter table audit_events rename to audit_events_offline`);
        const errors: unknown[] = [];
        const w = new BatchAuditWriter({
          db: closed?.db ?? db,
          clock,
          failAfterMs: 2_000,
          flushIntervalMs: 60_000,
          closeRetryMs: 0,
          onError: (e) => errors.push(e),
        });
        try {
          expect(w.healthy(clock.now())).toBe(true);
          w.record(sampleInput(1));
          await expect(w.flush()).rejects.toThrow();
          expect(w.pending).toBe(1);
          clock.advance(2_000);
          expect(w.healthy(clock.now())).toBe(true);
          clock.advance(1);
          expect(w.healthy(clock.now())).toBe(false);
          await expect(w.close()).rejects.toThrow(/1 unwritten events/);
        } finally {
          if (!closed) await db.execute(sql`alter table audit_events_offline rename to audit_events`);
        }
      });

      it("recovers once the database accepts writes again, losing nothing", async () => {
        const clock = new FakeClock("2026-01-01T00:00:00Z");
        const before = await countRows(db);
        const w = new BatchAuditWriter({ db, clock, failAfterMs: 2_000, flushIntervalMs: 60_000 });
        await db.execute(sql`alter table audit_events rename to audit_events_offline`);
        try {
          for (const e of inputs(5)) w.record(e);
          await expect(w.flush()).rejects.toThrow();
          clock.advance(1_000);
          w.record(sampleInput(6));
          await expect(w.flush()).rejects.toThrow();
          clock.advance(1_500);
          expect(w.healthy(clock.now())).toBe(false);
        } finally {
          await db.execute(sql`alter table audit_events_offline rename to audit_events`);
        }
        await w.flush();
        expect(w.healthy(clock.now())).toBe(true);
        expect(await countRows(db)).toBe(before + 6);
        expect(await verifyStored(db)).toMatchObject({ ok: true });
        await w.close();
      });

      /** A writer that retries every few ms, its errors collected. */
      const retryingWriter = (errors: unknown[], opts: { closeRetryMs?: number } = {}) =>
        new BatchAuditWriter({
          db,
          clock: new FakeClock(),
          flushIntervalMs: 1,
          maxBackoffMs: 5,
          onError: (e) => errors.push(e),
          ...opts,
        });
      /** Runs `during` with the events table away (every write fails), then puts it back. */
      async function whileOffline(during: () => Promise<void>): Promise<void> {
        await db.execute(sql`alter table audit_events rename to audit_events_offline`);
        try {
          await during();
        } finally {
          await db.execute(sql`alter table audit_events_offline rename to audit_events`);
        }
      }

      it("retries a failed write on its own timer with backoff", async () => {
        const before = await countRows(db);
        const errors: unknown[] = [];
        const w = retryingWriter(errors);
        await whileOffline(async () => {
          w.record(sampleInput(1));
          await expect.poll(() => errors.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
        });
        await expect.poll(() => w.pending, { timeout: 10_000 }).toBe(0);
        expect(await countRows(db)).toBe(before + 1);
        await w.close();
      });

      it("close() retries a failed write while the database comes back (a shutdown during a restart), losing nothing", async () => {
        const before = await countRows(db);
        const errors: unknown[] = [];
        const w = retryingWriter(errors, { closeRetryMs: 60_000 });
        let closing: Promise<void> | undefined;
        await whileOffline(async () => {
          w.record(sampleInput(1));
          closing = w.close();
          // It tried, failed and goes on trying (a single attempt would have rejected by now).
          await expect.poll(() => errors.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
        });
        await closing;
        expect(w.pending).toBe(0);
        expect(await countRows(db)).toBe(before + 1);
      });

      it("turns unhealthy when the queue is full and records how many events it dropped", async () => {
        const clock = new FakeClock("2026-01-01T00:00:00Z");
        const errors: unknown[] = [];
        const w = new BatchAuditWriter({
          db,
          clock,
          maxQueue: 10,
          flushIntervalMs: 60_000,
          onError: (e) => errors.push(e),
        });
        for (const e of inputs(15)) w.record({ ...e, campaignId: "queue-full" });
        expect(w.pending).toBe(10);
        expect(w.healthy(clock.now())).toBe(false);
        expect(errors).toHaveLength(1);
        expect(errors[0]).toBeInstanceOf(AuditQueueFullError);
        await w.flush();
        expect(w.healthy(clock.now())).toBe(true);
        await w.close();
        const { items } = await listEvents(db, { since: new Date("2026-01-01T00:00:00Z"), limit: 1 });
        expect(items[0]).toMatchObject({ type: "audit.dropped", data: { count: 5 } });
        expect((await listEvents(db, { campaignId: "queue-full" })).items).toHaveLength(10);
      });

      it("records an unstorable event as audit.invalid_event instead of blocking the queue", async () => {
        const errors: unknown[] = [];
        const clock = new FakeClock("2026-04-01T00:00:00Z");
        const w = new BatchAuditWriter({
          db,
          clock,
          flushIntervalMs: 60_000,
          onError: (e) => errors.push(e),
        });
        w.record({ type: "access", at: new Date(Number.NaN), linkId: "lnk_bad" });
        await w.close();
        expect(errors[0]).toBeInstanceOf(TypeError);
        const { items } = await listEvents(db, { limit: 1 });
        expect(items[0]).toMatchObject({
          type: "audit.invalid_event",
          at: clock.now(),
          data: { type: "access" },
        });
      });
    });

    describe("listEvents", () => {
      let seqs: number[];
      beforeAll(async () => {
        const t0 = Date.parse("2030-01-01T00:00:00Z");
        const events: AuditEventInput[] = Array.from({ length: 60 }, (_, i) => ({
          type: "access",
          at: new Date(t0 + i * 60_000),
          campaignId: i % 2 === 0 ? "list-a" : "list-b",
          linkId: `lnk_list${i % 3}`,
          decision: i % 5 === 0 ? "deny" : "allow",
          reason: i % 5 === 0 ? "revoked" : null,
          data: { i },
        }));
        const { firstSeq } = await appendEvents(db, events);
        seqs = events.map((_, i) => firstSeq + i);
      });

      it("pages newest first with an opaque cursor until nextCursor is null", async () => {
        const seen: number[] = [];
        let cursor: string | undefined;
        let pages = 0;
        do {
          const page = await listEvents(db, { since: new Date("2030-01-01T00:00:00Z"), limit: 25, cursor });
          seen.push(...page.items.map((e) => e.seq));
          cursor = page.nextCursor ?? undefined;
          pages++;
        } while (cursor);
        expect(pages).toBe(3);
        expect(seen).toEqual([...seqs].reverse());
      });

      it("has no next page when the last page is exactly full", async () => {
        const page = await listEvents(db, { campaignId: "list-a", limit: 30 });
        expect(page.items).toHaveLength(30);
        expect(page.nextCursor).toBeNull();
      });

      it("filters by campaign, link, decision and since together", async () => {
        const since = new Date(Date.parse("2030-01-01T00:00:00Z") + 30 * 60_000);
        const page = await listEvents(db, {
          campaignId: "list-a",
          linkId: "lnk_list0",
          decision: "deny",
          since,
        });
        // i even, i % 3 === 0, i % 5 === 0, i >= 30: 30 and 60 (excluded) -> i in {30}
        expect(page.items.map((e) => e.data)).toEqual([{ i: 30 }]);
        expect(page.items[0]).toMatchObject({
          campaignId: "list-a",
          linkId: "lnk_list0",
          decision: "deny",
          reason: "revoked",
        });
        const denies = await listEvents(db, { campaignId: "list-b", decision: "deny", limit: 500 });
        expect(denies.items.map((e) => (e.data as { i: number }).i)).toEqual([55, 45, 35, 25, 15, 5]);
      });

      it("returns the stored columns, chain columns included", async () => {
        const { items } = await listEvents(db, { linkId: "lnk_list1", limit: 1 });
        expect(items[0]).toMatchObject({
          seq: seqs.at(-2),
          type: "access",
          at: new Date("2030-01-01T00:58:00Z"),
        });
        expect(items[0]?.hash).toMatch(/^[0-9a-f]{64}$/);
        expect(items[0]?.prevHash).toMatch(/^[0-9a-f]{64}$/);
      });

      it("clamps limit to 1..500", async () => {
        expect((await listEvents(db, { limit: 10_000 })).items).toHaveLength(500);
        expect((await listEvents(db, { limit: 0 })).items).toHaveLength(1);
      });

      it.each([
        "garbage",
        "",
        Buffer.from("audit:-1").toString("base64url"),
        Buffer.from("x:5").toString("base64url"),
      ])("refuses cursor %j with a validation error", async (cursor) => {
        const err = await listEvents(db, { cursor }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(PhaselockError);
        expect((err as PhaselockError).code).toBe("validation");
      });
    });

    describe("export", () => {
      let seqs: number[];
      beforeAll(async () => {
        const rows = await queryRows<{ seq: number }>(
          db,
          sql`select seq::int as seq from audit_events where at >= '2030-01-01' and at < '2030-01-02' order by seq`,
        );
        seqs = rows.map((r) => r.seq);
      });

      async function exportLines(since?: Date): Promise<string[]> {
        const lines: string[] = [];
        await exportEvents(db, { since, write: (l) => void lines.push(l), batchSize: 333 });
        return lines;
      }

      it("exports the whole chain, which verifies offline to the stored head", async () => {
        const stored = await verifyStored(db);
        const lines = await exportLines();
        expect(JSON.parse(lines[0]!)).toEqual({
          type: "phaselock.audit.export",
          version: 1,
          from_seq: 1,
          prev_hash: GENESIS,
        });
        expect(lines).toHaveLength((await countRows(db)) + 2);
        const r = await verifyExport(lines);
        expect(r).toMatchObject({ ok: true, fromSeq: 1 });
        expect(r.ok && stored.ok && r.head === stored.head && r.events === stored.events).toBe(true);
      });

      it("breaks at the seq of an event with one byte changed", async () => {
        const lines = await exportLines();
        const i = 40;
        const { seq } = JSON.parse(lines[i]!) as { seq: number };
        const at = lines[i]!.indexOf('"type":"') + 9;
        const changed =
          lines[i]!.slice(0, at) + (lines[i]![at] === "X" ? "Y" : "X") + lines[i]!.slice(at + 1);
        const r = await verifyExport(lines.map((l, j) => (j === i ? changed : l)));
        expect(r).toMatchObject({ ok: false, events: seq - 1, brokenAt: { seq, reason: "hash_mismatch" } });
      });

      it("exports from the first event at or after --since, and that still verifies", async () => {
        const since = new Date("2030-01-01T00:30:00Z");
        const lines = await exportLines(since);
        const header = JSON.parse(lines[0]!) as { from_seq: number; prev_hash: string };
        expect(header.from_seq).toBe(seqs[30]);
        const [prev] = await queryRows<{ hash: string }>(
          db,
          sql`select hash from audit_events where seq = ${header.from_seq - 1}`,
        );
        expect(header.prev_hash).toBe(prev?.hash);
        const r = await verifyExport(lines);
        expect(r).toMatchObject({ ok: true, fromSeq: seqs[30], events: (await headSeq(db)) - seqs[30]! + 1 });
      });

      it("exports an empty, verifiable stretch when nothing is that recent", async () => {
        const lines = await exportLines(new Date("2100-01-01T00:00:00Z"));
        expect(lines).toHaveLength(2);
        expect(await verifyExport(lines)).toMatchObject({
          ok: true,
          events: 0,
          fromSeq: (await headSeq(db)) + 1,
        });
      });

      // On PGlite the CLI needs a data directory of its own: see "audit CLI on embedded PGlite".
      if (backend.name === "postgres") {
        it("CLI: audit:export --out then audit:verify-export", async () => {
          const out = join(tmp, "export.ndjson");
          const err = collect();
          const env = { DATABASE_URL: testDb.url, INIT_CWD: tmp };
          const code = await runExportCli(["--since", "2030-01-01", "--out", "export.ndjson"], env, {
            stdout: collect().stream,
            stderr: err.stream,
          });
          expect(code, err.text()).toBe(0);
          expect(err.text()).toMatch(/wrote \d+ events/);
          const ok = collect();
          expect(await runVerifyCli([out], env, { stdout: ok.stream, stderr: collect().stream })).toBe(0);
          expect(ok.text()).toMatch(/^ok: \d+ events, head [0-9a-f]{64}/);

          const text = await readFile(out, "utf8");
          await writeFile(out, text.replace('"reason":"revoked"', '"reason":"revokeD"'));
          const bad = collect();
          expect(await runVerifyCli([out], env, { stdout: bad.stream, stderr: collect().stream })).toBe(1);
          expect(bad.text()).toMatch(/^broken at seq \d+ \(line \d+\) id evt_\S+: hash_mismatch/);
        });
      }
    });

    it("benchAppend measures a rate", async () => {
      const rate = await benchAppend(db, 2_000);
      expect(rate).toBeGreaterThan(0);
      expect(await verifyStored(db)).toMatchObject({ ok: true });
    });
  });
}

describe("audit CLI on embedded PGlite", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "phaselock-audit-cli-"));
    const handle = createDb({ dataDir: join(dir, "data") });
    try {
      await migrate(handle);
      await appendEvents(handle.db, inputs(50));
    } finally {
      await handle.close();
    }
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("exports DATA_DIR to stdout; the export verifies, a cut one does not", async () => {
    const env = { DATA_DIR: "data", INIT_CWD: dir };
    const out = collect();
    const err = collect();
    expect(await runExportCli([], env, { stdout: out.stream, stderr: err.stream })).toBe(0);
    expect(err.text()).toContain("embedded PGlite");
    const lines = out.text().trimEnd().split("\n");
    expect(lines).toHaveLength(52);
    expect(await verifyExport(lines)).toMatchObject({ ok: true, events: 50 });

    await writeFile(join(dir, "cut.ndjson"), `${lines.slice(0, 20).join("\n")}\n`);
    const bad = collect();
    expect(await runVerifyCli(["cut.ndjson"], env, { stdout: bad.stream, stderr: collect().stream })).toBe(1);
    expect(bad.text()).toMatch(/^broken at seq 20 .*truncated/);
  });

  it("refuses bad arguments with exit code 2", async () => {
    const io = () => ({ stdout: collect().stream, stderr: collect().stream });
    expect(await runExportCli(["--since", "not-a-date"], {}, io())).toBe(2);
    expect(await runExportCli(["--bogus"], {}, io())).toBe(2);
    expect(await runVerifyCli([], {}, io())).toBe(2);
    expect(await runVerifyCli(["missing.ndjson"], { INIT_CWD: dir }, io())).toBe(2);
  });
});
