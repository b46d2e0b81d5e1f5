import { FakeClock } from "@phaselock/core";
import { type Db, queryRows } from "@phaselock/db";
import { createMemoryDb } from "@phaselock/db/testing";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sampleInput } from "./test-chain.ts";
import { AuditQueueFullError, BatchAuditWriter } from "./writer.ts";

const count = async (db: Db) =>
  (await queryRows<{ n: number }>(db, sql`select count(*)::int as n from audit_events`))[0]?.n ?? 0;

describe("BatchAuditWriter.recordDurable (group commit)", () => {
  let handle: Awaited<ReturnType<typeof createMemoryDb>>;
  beforeAll(async () => {
    handle = await createMemoryDb();
  });
  afterAll(() => handle.close());

  it("resolves only once the event is committed, many callers sharing one insert", async () => {
    const db = handle.db;
    // A batching interval far longer than the test: only the linger can have written them.
    const w = new BatchAuditWriter({ db, clock: new FakeClock(), flushIntervalMs: 60_000, lingerMs: 1 });
    const before = await count(db);
    const denial = sampleInput(0);
    w.record(denial as never);
    const durable = Array.from({ length: 20 }, (_, i) => w.recordDurable(sampleInput(i + 1) as never));
    let settled = 0;
    for (const p of durable) void p.then(() => settled++);
    expect(settled).toBe(0);
    await Promise.all(durable);
    // Every durable event is in the table when its promise resolves, the queued denial with them.
    expect(await count(db)).toBe(before + 21);
    const [tx] = await queryRows<{ n: number }>(
      db,
      sql`select count(distinct xmin::text)::int as n from audit_events where seq > ${before}`,
    );
    expect(tx?.n).toBe(1);
    await w.close();
  });

  it("drains with one loop under steady load: a failed write is reported once, not once per timer that fired", async () => {
    // The database as the writer sees it, but with a switch that fails every transaction.
    let broken = false;
    let failedWrites = 0;
    const db = Object.create(handle.db) as Db;
    db.transaction = ((...args: Parameters<Db["transaction"]>) => {
      if (broken) {
        failedWrites++;
        return Promise.reject(new Error("database gone"));
      }
      return handle.db.transaction(...args);
    }) as Db["transaction"];
    const errors: unknown[] = [];
    let commits = 0;
    const w = new BatchAuditWriter({
      db,
      clock: new FakeClock(),
      flushIntervalMs: 60_000,
      maxBackoffMs: 60_000,
      lingerMs: 1,
      onError: (e) => errors.push(e),
      onCommit: () => commits++,
    });
    // 32 answers waiting at all times, as the bench's connections: the queue is never empty when
    // a batch commits. Each linger timer used to start a drain of its own that never ended.
    let i = 0;
    const answers = Array.from({ length: 32 }, async () => {
      for (;;) await w.recordDurable(sampleInput(i++) as never);
    });
    while (commits < 150) await new Promise((r) => setImmediate(r));
    broken = true;
    // Every waiting answer is refused by the batch that failed (the loops stop there).
    for (const a of await Promise.allSettled(answers)) expect(a.status).toBe("rejected");
    // The drain reports the failure after the answers are refused; every loop awaiting the same
    // write would report within the same turn.
    while (errors.length === 0) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    // One report per failed write (answers recorded meanwhile are a write of their own), not one
    // per loop awaiting it.
    expect(failedWrites).toBeGreaterThan(0);
    expect(errors).toHaveLength(failedWrites);
    expect(w.draining).toBe(false);
    broken = false;
    await w.close();
    expect(w.pending).toBe(0);
  });

  it("rejects when the event cannot be written, so the answer is refused", async () => {
    const broken = await createMemoryDb();
    await broken.close();
    const w = new BatchAuditWriter({
      db: broken.db,
      clock: new FakeClock(),
      lingerMs: 0,
      maxBackoffMs: 60_000,
      onError: () => {},
    });
    await expect(w.recordDurable(sampleInput(0) as never)).rejects.toBeDefined();
  });

  it("rejects at once when the queue is full, and counts the dropped denials in audit.dropped", async () => {
    const db = handle.db;
    const errors: unknown[] = [];
    const w = new BatchAuditWriter({
      db,
      clock: new FakeClock(),
      flushIntervalMs: 60_000,
      maxQueue: 2,
      onError: (e) => errors.push(e),
    });
    w.record(sampleInput(0) as never);
    w.record(sampleInput(1) as never);
    w.record(sampleInput(2) as never);
    await expect(w.recordDurable(sampleInput(3) as never)).rejects.toBeInstanceOf(AuditQueueFullError);
    expect(w.healthy(new Date())).toBe(false);
    await w.close();
    const [dropped] = await queryRows<{ data: { count: number } }>(
      db,
      sql`select data from audit_events where type = 'audit.dropped' order by seq desc limit 1`,
    );
    expect(dropped?.data.count).toBe(1);
  });
});
