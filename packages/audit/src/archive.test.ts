/**
 * Partitions and retention (issue 12, item 6): audit_events is partitioned by month, partitions
 * are append-only too, and `pnpm audit:archive` retires old months only after their archive
 * verifies against a signed checkpoint; the offline verifier then checks the archive plus a live
 * export as one log.
 */
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { FakeClock } from "@phaselock/core";
import { type Db, queryRows } from "@phaselock/db";
import { dbBackends, type TestDb } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ArchiveRefusedError, archiveBefore, ensureAuditPartitions } from "./archive.ts";
import { Checkpointer } from "./checkpointer.ts";
import { runVerifyCli } from "./cli/verify.ts";
import { ed25519FromSeed, parseSignerKey, signerKeyString, verifierKeyString } from "./note.ts";
import { appendEvents, exportEvents, verifyStored } from "./store.ts";
import { sampleInput } from "./test-chain.ts";
import { asDatabaseOwner } from "./testing.ts";

const ORIGIN = "phaselock.test/audit";
const seed = new Uint8Array(randomBytes(32));
const signer = parseSignerKey(signerKeyString(ORIGIN, seed));
const vkey = verifierKeyString(ORIGIN, ed25519FromSeed(seed).publicKey);

const partitions = async (db: Db) =>
  (
    await queryRows<{ name: string }>(
      db,
      sql`select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
          where i.inhparent = 'audit_events'::regclass order by 1`,
    )
  ).map((r) => r.name);

/** Appends `n` events as if in `month` (YYYY-MM): the table owner moves the partition key's default. */
async function appendIn(db: Db, month: string, n: number, from: number): Promise<void> {
  await db.execute(sql`select audit_events_partition(${`${month}-01`}::date)`);
  await db.execute(
    sql.raw(`alter table audit_events alter column partition_month set default '${month}-01'`),
  );
  await appendEvents(
    db,
    Array.from({ length: n }, (_, i) => sampleInput(from + i)),
  );
}

async function run(args: string[]): Promise<{ code: number; out: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = "";
  stdout.on("data", (c) => {
    out += String(c);
  });
  stderr.on("data", (c) => {
    out += String(c);
  });
  const code = await runVerifyCli(args, {}, { stdout, stderr });
  return { code, out };
}

for (const backend of dbBackends) {
  describeIntegration(`audit partitions and retention (${backend.name})`, backend.needs, () => {
    let testDb: TestDb;
    let db: Db;
    let dir: string;
    const clock = new FakeClock("2026-03-15T09:00:00Z");
    const checkpoint = () => new Checkpointer({ db, signer, clock, dir: undefined }).checkpoint();

    beforeAll(async () => {
      testDb = await backend.open();
      db = testDb.handle.db;
      dir = await mkdtemp(join(tmpdir(), "archive-"));
      await db.execute(
        sql`insert into audit_keys (origin, verifier_key, private_key_enc) values (${ORIGIN}, ${vkey}, 'unused')`,
      );
    });
    afterAll(async () => {
      await testDb?.drop();
      await rm(dir, { recursive: true, force: true });
    });

    it("is partitioned by month, keeps partitions ahead, and every partition is append-only", async () => {
      const [kind] = await queryRows<{ k: string }>(
        db,
        sql`select partstrat::text as k from pg_partitioned_table where partrelid = 'audit_events'::regclass`,
      );
      expect(kind?.k).toBe("r");
      const now = new Date();
      const name = (d: Date) =>
        `audit_events_${d.getUTCFullYear()}_${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
      const next = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 2, 1));
      expect(await partitions(db)).toEqual(
        expect.arrayContaining(["audit_events_default", name(now), name(next)]),
      );
      expect(await ensureAuditPartitions(db)).toBe(0); // already there: idempotent

      await appendIn(db, "2026-01", 5, 0);
      const [row] = await queryRows<{ part: string }>(
        db,
        sql`select tableoid::regclass::text as part from audit_events where seq = 1`,
      );
      expect(row?.part).toBe("audit_events_2026_01");
      for (const statement of [
        sql`delete from audit_events_2026_01 where seq = 1`,
        sql`update audit_events_2026_01 set reason = 'x' where seq = 1`,
        sql`truncate audit_events_2026_01`,
        sql`truncate audit_events_default`,
      ]) {
        await expect(db.execute(statement)).rejects.toThrow();
      }
    });

    it("refuses to retire a month no signed checkpoint covers yet, dropping nothing", async () => {
      const before = await partitions(db);
      await expect(
        archiveBefore({ db, before: "2026-02", outDir: join(dir, "a"), now: clock.now() }),
      ).rejects.toThrow(/no signed checkpoint covers seq 5/);
      expect(await partitions(db)).toEqual(before);
    });

    it("refuses when the stored events do not verify (an owner edited one), dropping nothing", async () => {
      await checkpoint(); // size 5
      const [original] = await queryRows<{ reason: string | null }>(
        db,
        sql`select reason from audit_events where seq = 2`,
      );
      await asDatabaseOwner(db, (tx) =>
        tx.execute(sql`update audit_events set reason = 'rewritten' where seq = 2`),
      );
      const out = join(dir, "refused");
      await expect(archiveBefore({ db, before: "2026-02", outDir: out, now: clock.now() })).rejects.toThrow(
        ArchiveRefusedError,
      );
      expect(await partitions(db)).toContain("audit_events_2026_01");
      await asDatabaseOwner(db, (tx) =>
        tx.execute(sql`update audit_events set reason = ${original?.reason ?? null} where seq = 2`),
      );
      await rm(out, { recursive: true, force: true });
    });

    it("archives a month with its checkpoint, verifies it, then drops it; the tree still verifies", async () => {
      await appendIn(db, "2026-02", 4, 5);
      await checkpoint(); // size 9, or later
      const out = join(dir, "archive");
      const first = await archiveBefore({ db, before: "2026-02", outDir: out, now: clock.now() });
      expect(first).toMatchObject({
        months: ["2026-01"],
        archived: { fromSeq: 1, toSeq: 5, checkpointSize: 5, checkpoint: "checkpoint-5.note" },
      });
      expect(await partitions(db)).not.toContain("audit_events_2026_01");
      expect(await verifyStored(db)).toMatchObject({ ok: true, events: 4 });
      expect(await verifyStored(db, { verifierKey: vkey })).toMatchObject({ ok: true, events: 4 });

      // Offline: the archive plus a live export is the whole log, against both checkpoints.
      await appendIn(db, "2026-03", 3, 9);
      await checkpoint(); // size 12
      const live = join(dir, "live.ndjson");
      const lines: string[] = [];
      await exportEvents(db, { write: (l) => void lines.push(l), verifierKey: vkey });
      await writeFile(live, `${lines.join("\n")}\n`);
      const latest = await queryRows<{ note: string }>(
        db,
        sql`select note from audit_checkpoints where tree_size = 12`,
      );
      const cp12 = join(dir, "cp-12.note");
      await writeFile(cp12, latest[0]!.note);
      const archive = join(out, first.archived!.file);
      const cp5 = join(out, "checkpoint-5.note");
      const key = join(out, "audit.vkey");
      const ok = await run([
        live,
        "--archive",
        archive,
        "--key",
        key,
        "--checkpoint",
        cp12,
        "--checkpoint",
        cp5,
      ]);
      expect(ok.code).toBe(0);
      expect(ok.out).toContain("ok: 12 events");
      // The live export alone is checked too: its header names the archived events' tree.
      const alone = await run([live, "--key", key, "--checkpoint", cp12, "--checkpoint", cp5]);
      expect(alone.code, alone.out).toBe(0);
      expect(alone.out).toContain("ok: 7 events from seq 6 (the tree of the 5 before them");

      // A second retirement continues the first; all archives plus the live part still verify.
      const second = await archiveBefore({ db, before: "2026-03", outDir: out, now: clock.now() });
      expect(second.archived).toMatchObject({ fromSeq: 6, toSeq: 9 });
      expect(second.archived!.checkpointSize).toBeGreaterThanOrEqual(9);
      expect(await verifyStored(db)).toMatchObject({ ok: true, events: 3 });
      // With the key: resumed from the first signed checkpoint after the archive, the live events
      // still give the signed roots (checkpointer.test.ts "verifyStored after a forged archive").
      expect(await verifyStored(db, { verifierKey: vkey })).toMatchObject({ ok: true, events: 3 });
      const live2 = join(dir, "live2.ndjson");
      const lines2: string[] = [];
      await exportEvents(db, { write: (l) => void lines2.push(l) });
      await writeFile(live2, `${lines2.join("\n")}\n`);
      const files = (await readdir(out)).filter((f) => f.endsWith(".ndjson")).map((f) => join(out, f));
      expect(files).toHaveLength(2);
      const args = files.flatMap((f) => ["--archive", f]);
      expect(await run([live2, ...args, "--key", key, "--checkpoint", cp12])).toMatchObject({ code: 0 });
      // A missing archive, or an edited one, fails.
      expect((await run([live2, "--archive", files[1]!, "--key", key, "--checkpoint", cp12])).code).toBe(1);
      const text = await readFile(files[0]!, "utf8");
      await writeFile(files[0]!, text.replace('"seq":3', '"seq":3 '));
      expect((await run([live2, ...args, "--key", key, "--checkpoint", cp12])).code).toBe(1);
      await writeFile(files[0]!, text);
      expect(existsSync(join(out, second.archived!.checkpoint))).toBe(true);
    });
  });
}
