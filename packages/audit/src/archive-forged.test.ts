/**
 * An attacker's review of `pnpm audit:archive` (issue 12, item 6). The services' role may INSERT
 * into audit_keys and audit_checkpoints (the token service writes both), so whoever holds it can
 * store a key of their own and a checkpoint it signed. The archive must not take such a pair as
 * the log's: it would write the attacker's checkpoint and verifier key (`audit.vkey`) into the
 * archive folder that auditors keep, and from then on checkpoints signed by that key would be
 * believed.
 */
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeClock } from "@phaselock/core";
import { type Db, queryRows } from "@phaselock/db";
import { dbBackends, type TestDb } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ArchiveRefusedError, archiveBefore } from "./archive.ts";
import { Checkpointer } from "./checkpointer.ts";
import { IncrementalTree } from "./merkle.ts";
import {
  ed25519FromSeed,
  parseSignerKey,
  signCheckpoint,
  signerKeyString,
  verifierKeyString,
} from "./note.ts";
import { appendEvents, readLeafHashes } from "./store.ts";
import { sampleInput } from "./test-chain.ts";

const ORIGIN = "phaselock.test/audit";
const seed = new Uint8Array(randomBytes(32));
const signer = parseSignerKey(signerKeyString(ORIGIN, seed));
const vkey = verifierKeyString(ORIGIN, ed25519FromSeed(seed).publicKey);
const EVIL = "evil.example/audit";
const evilSeed = new Uint8Array(randomBytes(32));
const evilSigner = parseSignerKey(signerKeyString(EVIL, evilSeed));
const evilVkey = verifierKeyString(EVIL, ed25519FromSeed(evilSeed).publicKey);

const partitions = async (db: Db) =>
  (
    await queryRows<{ name: string }>(
      db,
      sql`select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
          where i.inhparent = 'audit_events'::regclass order by 1`,
    )
  ).map((r) => r.name);

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

for (const backend of dbBackends) {
  describeIntegration(
    `audit archive against a forged key and checkpoint (${backend.name})`,
    backend.needs,
    () => {
      let testDb: TestDb;
      let db: Db;
      let dir: string;
      const clock = new FakeClock("2026-03-15T09:00:00Z");

      beforeAll(async () => {
        testDb = await backend.open();
        db = testDb.handle.db;
        dir = await mkdtemp(join(tmpdir(), "archive-forged-"));
        await db.execute(
          sql`insert into audit_keys (origin, verifier_key, private_key_enc) values (${ORIGIN}, ${vkey}, 'unused')`,
        );
        await appendIn(db, "2026-01", 5, 0);
        await appendIn(db, "2026-02", 4, 5);
        await new Checkpointer({ db, signer, clock, dir: undefined }).checkpoint(); // size 9, the log's
        // The attacker, with the services' role: a key of their own and a checkpoint of size 5 it
        // signed, over the true root (the leaves are readable), so every root check passes.
        const tree = new IncrementalTree();
        for (const h of await readLeafHashes(db, 0, 5)) tree.appendLeafHash(h);
        const note = signCheckpoint({ origin: EVIL, size: 5, rootHash: tree.root() }, evilSigner);
        await db.execute(
          sql`insert into audit_keys (origin, verifier_key, private_key_enc) values (${EVIL}, ${evilVkey}, 'unused')`,
        );
        await db.execute(
          sql`insert into audit_checkpoints (tree_size, root_hash, note, frontier, created_at)
            values (5, ${Buffer.from(tree.root()).toString("base64")}, ${note}, '[]'::jsonb, now())`,
        );
      });
      afterAll(async () => {
        await testDb?.drop();
        await rm(dir, { recursive: true, force: true });
      });

      it("without --key, refuses when audit_keys names more than one log, dropping nothing", async () => {
        const out = join(dir, "no-key");
        await expect(archiveBefore({ db, before: "2026-02", outDir: out, now: clock.now() })).rejects.toThrow(
          ArchiveRefusedError,
        );
        expect(await partitions(db)).toContain("audit_events_2026_01");
      });

      it("refuses a --key other than the one an earlier archive in the folder was made with", async () => {
        const out = join(dir, "pinned");
        await rm(out, { recursive: true, force: true });
        await mkdir(out, { recursive: true, mode: 0o700 });
        await writeFile(join(out, "audit.vkey"), vkey);
        await expect(
          archiveBefore({ db, before: "2026-02", outDir: out, now: clock.now(), verifierKey: evilVkey }),
        ).rejects.toThrow(/audit\.vkey/);
        expect(await readFile(join(out, "audit.vkey"), "utf8")).toBe(vkey);
        expect(await partitions(db)).toContain("audit_events_2026_01");
      });

      it("with the log's key, skips the forged checkpoint and archives with one the log signed", async () => {
        const out = join(dir, "archive");
        const result = await archiveBefore({
          db,
          before: "2026-02",
          outDir: out,
          now: clock.now(),
          verifierKey: vkey,
        });
        expect(result.archived).toMatchObject({ fromSeq: 1, toSeq: 5, checkpointSize: 9 });
        expect(await readFile(join(out, "audit.vkey"), "utf8")).toBe(vkey);
        expect(await readFile(join(out, "checkpoint-9.note"), "utf8")).toContain(ORIGIN);
      });
    },
  );
}
