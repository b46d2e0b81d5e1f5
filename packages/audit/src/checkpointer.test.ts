import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FakeClock } from "@phaselock/core";
import { createDb, type Db, queryRows, schema } from "@phaselock/db";
import { createTestDatabase, dbBackends, type TestDb } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { asc, sql } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { canonicalEvent, chainHash, type StoredEvent } from "./chain.ts";
import {
  Checkpointer,
  type CheckpointTimers,
  latestCheckpoint,
  ProofRangeError,
  storedConsistencyProof,
  storedInclusionProof,
  writeCheckpointFile,
} from "./checkpointer.ts";
import { eventLeafHash } from "./leaf.ts";
import { IncrementalTree, leafHashHex, rootOf, verifyConsistency, verifyInclusion } from "./merkle.ts";
import {
  ed25519FromSeed,
  parseSignerKey,
  signerKeyString,
  verifierKeyString,
  verifyCheckpoint,
} from "./note.ts";
import { appendEvents, streamEvents, verifyStored } from "./store.ts";
import { sampleInput } from "./test-chain.ts";
import { asDatabaseOwner } from "./testing.ts";

const ORIGIN = "phaselock.test/audit";
const seed = new Uint8Array(randomBytes(32));
const signer = parseSignerKey(signerKeyString(ORIGIN, seed));
const vkey = verifierKeyString(ORIGIN, ed25519FromSeed(seed).publicKey);
const b64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));

/** A timer the test fires by hand. */
function manualTimers(): CheckpointTimers & { fire(): void; intervals: number[] } {
  let fn: (() => void) | undefined;
  const intervals: number[] = [];
  return {
    intervals,
    setInterval: (f, ms) => {
      fn = f;
      intervals.push(ms);
      return 1;
    },
    clearInterval: () => {
      fn = undefined;
    },
    fire: () => fn?.(),
  };
}

async function storedRoot(db: Db, size: number): Promise<Uint8Array> {
  const leaves: Uint8Array[] = [];
  for await (const e of streamEvents(db, { toSeq: size })) leaves.push(eventLeafHash(e));
  return rootOf(leaves);
}

describe("IncrementalTree frontier", () => {
  it("resumes to the same roots as a tree built in one go", () => {
    const leaves = Array.from({ length: 37 }, () => new Uint8Array(randomBytes(32)));
    for (const cut of [0, 1, 2, 5, 8, 16, 31, 36]) {
      const first = new IncrementalTree();
      for (const h of leaves.slice(0, cut)) first.appendLeafHash(h);
      const resumed = IncrementalTree.fromFrontier(cut, first.frontier());
      for (const h of leaves.slice(cut)) resumed.appendLeafHash(h);
      expect(resumed.root()).toEqual(rootOf(leaves));
    }
  });

  it("refuses a frontier of the wrong length", () => {
    expect(() => IncrementalTree.fromFrontier(3, [new Uint8Array(32)])).toThrow(RangeError);
  });
});

for (const backend of dbBackends) {
  describeIntegration(`Checkpointer (${backend.name})`, backend.needs, () => {
    let testDb: TestDb;
    let db: Db;
    let dir: string;
    const clock = new FakeClock("2026-01-01T09:00:00Z");

    beforeAll(async () => {
      testDb = await backend.open();
      db = testDb.handle.db;
      dir = join(await mkdtemp(join(tmpdir(), "cp-")), "checkpoints");
    });
    afterAll(async () => {
      await testDb?.drop();
      await rm(join(dir, ".."), { recursive: true, force: true });
    });

    it("signs nothing on an empty log, then a checkpoint per growth, on the injected timer", async () => {
      const timers = manualTimers();
      const cp = new Checkpointer({ db, signer, clock, dir, timers });
      expect(await cp.checkpoint()).toBeNull();
      cp.start();
      expect(timers.intervals).toEqual([10_000]);

      await appendEvents(db, [sampleInput(0), sampleInput(1), sampleInput(2)]);
      timers.fire();
      await cp.checkpoint();
      const first = await latestCheckpoint(db);
      expect(first?.treeSize).toBe(3);
      const opened = verifyCheckpoint(first!.note, vkey, ORIGIN);
      expect(opened.ok).toBe(true);
      if (opened.ok) expect(opened.checkpoint.rootHash).toEqual(await storedRoot(db, 3));

      // No new events: the same checkpoint, nothing re-signed.
      expect((await cp.checkpoint())?.note).toBe(first!.note);

      await appendEvents(
        db,
        Array.from({ length: 5 }, (_, i) => sampleInput(3 + i)),
      );
      const second = await cp.checkpoint();
      expect(second?.treeSize).toBe(8);
      expect(b64(second!.rootHash)).toEqual(await storedRoot(db, 8));
      await cp.stop();

      const files = (await readdir(dir)).sort();
      expect(files).toEqual(["3.note", "8.note"]);
      expect(await readFile(join(dir, "8.note"), "utf8")).toBe(second!.note);
      expect((await stat(dir)).mode & 0o777).toBe(0o700);
      expect((await stat(join(dir, "3.note"))).mode & 0o777).toBe(0o600);
    });

    it("serves inclusion and consistency proofs that verify against the signed roots", async () => {
      const cp = await latestCheckpoint(db);
      const size = cp!.treeSize;
      const root = b64(cp!.rootHash);
      const events = [];
      for await (const e of streamEvents(db)) events.push(e);
      for (const index of [0, 3, size - 1]) {
        const proof = await storedInclusionProof(db, index, size);
        expect(verifyInclusion(index, size, eventLeafHash(events[index]!), proof, root)).toBe(true);
      }
      const proof = await storedConsistencyProof(db, 3, size);
      expect(verifyConsistency(3, size, await storedRoot(db, 3), root, proof)).toBe(true);
      await expect(storedConsistencyProof(db, 1, size + 1)).rejects.toBeInstanceOf(ProofRangeError);
      await expect(storedConsistencyProof(db, 4, 3)).rejects.toBeInstanceOf(ProofRangeError);
      await expect(storedInclusionProof(db, size, size)).rejects.toBeInstanceOf(ProofRangeError);
    });
  });
}

describeIntegration("a database writer rewriting the stored checkpoint", ["postgres"], () => {
  let testDb: TestDb;
  let db: Db;
  beforeAll(async () => {
    testDb = await createTestDatabase();
    db = testDb.handle.db;
  });
  afterAll(async () => {
    await testDb?.drop();
  });

  it("gets no signature over a history that does not extend the signed one", async () => {
    const clock = new FakeClock();
    const cp = new Checkpointer({ db, signer, clock });
    await appendEvents(db, [sampleInput(0), sampleInput(1), sampleInput(2), sampleInput(3)]);
    const signed = await cp.checkpoint();
    expect(signed?.treeSize).toBe(4);

    // Rewrite event 1's leaf, and the stored frontier to the rewritten tree's, so a checkpointer
    // that trusted the row would sign a fork of the checkpoint auditors hold.
    const forged = new Uint8Array(randomBytes(32));
    const rows = await db.select().from(schema.auditEvents).orderBy(asc(schema.auditEvents.seq));
    const leaves = rows.map((r, i) => (i === 0 ? forged : new Uint8Array(Buffer.from(r.leafHash, "hex"))));
    const tree = new IncrementalTree();
    for (const h of leaves) tree.appendLeafHash(h);
    await asDatabaseOwner(db, async (tx) => {
      await tx.execute(
        sql`update audit_events set leaf_hash = ${Buffer.from(forged).toString("hex")} where seq = 1`,
      );
      await tx.execute(
        sql`update audit_checkpoints set frontier = ${JSON.stringify(tree.frontier().map((h) => Buffer.from(h).toString("base64")))}::jsonb, root_hash = ${Buffer.from(tree.root()).toString("base64")} where tree_size = 4`,
      );
    });
    await appendEvents(db, [sampleInput(4)]);
    await expect(cp.checkpoint()).rejects.toThrow(/does not match its signed root/);
    expect((await latestCheckpoint(db))?.treeSize).toBe(4);

    // A row whose note is not this log's (here: the size column raised) is passed over: the
    // tree is rebuilt from the stored events, where the forged leaf is refused.
    await asDatabaseOwner(db, (tx) =>
      tx.execute(sql`update audit_checkpoints set tree_size = 5 where tree_size = 4`),
    );
    await expect(cp.checkpoint()).rejects.toThrow(/leaf hash of seq 1 is not its event's/);
  });
});

describeIntegration("checkpoints held outside the database", ["postgres"], () => {
  let testDb: TestDb;
  let db: Db;
  let dir: string;
  const clock = new FakeClock("2026-01-01T09:00:00Z");
  beforeEach(async () => {
    testDb = await createTestDatabase();
    db = testDb.handle.db;
    dir = join(await mkdtemp(join(tmpdir(), "cp-")), "checkpoints");
  });
  afterEach(async () => {
    await testDb?.drop();
    await rm(join(dir, ".."), { recursive: true, force: true });
  });
  /** As the owner: checkpoint 7's row deleted, event 6 rewritten with a leaf hash to match. */
  const deleteSevenRewriteSix = () =>
    asDatabaseOwner(db, async (tx) => {
      await tx.execute(sql`delete from audit_checkpoints where tree_size = 7`);
      await tx.execute(sql`update audit_events set reason = 'rewritten' where seq = 6`);
      const [row] = await tx.select().from(schema.auditEvents).where(sql`seq = 6`);
      await tx.execute(
        sql`update audit_events set leaf_hash = ${Buffer.from(eventLeafHash(row!)).toString("hex")} where seq = 6`,
      );
    });
  const append = (from: number, n: number) =>
    appendEvents(
      db,
      Array.from({ length: n }, (_, i) => sampleInput(from + i)),
    );

  it("pass over what is not a note file under a note's name: a FIFO is never waited on, a symlink never followed", async () => {
    const first = new Checkpointer({ db, signer, clock, dir });
    await append(0, 2);
    const two = await first.checkpoint();
    // Someone with write access to the folder plants a FIFO above it and a symlink to the real
    // note under another size; a new process must neither hang nor take the symlink as a pin.
    execFileSync("mkfifo", [join(dir, "9.note")]);
    await symlink(join(dir, "2.note"), join(dir, "5.note"));
    await append(2, 1);
    const next = await new Checkpointer({ db, signer, clock, dir }).checkpoint();
    expect(next?.treeSize).toBe(3);
    expect(two?.treeSize).toBe(2);
    expect(await readFile(join(dir, "3.note"), "utf8")).toBe(next?.note);
  });

  it("get no fork signed: an owner who deletes the newest checkpoint and rewrites what it covered is refused, by a new process too", async () => {
    const first = new Checkpointer({ db, signer, clock, dir });
    await append(0, 4);
    await first.checkpoint();
    await append(4, 3);
    const seven = await first.checkpoint();
    expect(seven?.treeSize).toBe(7);

    // Delete checkpoint 7, rewrite event 6 with a leaf hash to match: from checkpoint 4 the log
    // would extend to a root of size 7 other than the one auditors hold.
    await deleteSevenRewriteSix();
    for (const cp of [first, new Checkpointer({ db, signer, clock, dir })]) {
      await expect(cp.checkpoint()).rejects.toThrow(/do not extend checkpoint 7 this log signed/);
    }
    // What the folder prevents: a checkpointer knowing nothing outside the database signs it.
    await expect(new Checkpointer({ db, signer, clock, dir: undefined }).checkpoint()).resolves.toMatchObject(
      {
        treeSize: 7,
      },
    );
    expect(await readFile(join(dir, "7.note"), "utf8")).toBe(seven!.note);
  });

  it("restore a checkpoint whose row was removed when the events still extend it, and refuse a log shorter than it", async () => {
    const cp = new Checkpointer({ db, signer, clock, dir });
    await append(0, 5);
    const five = await cp.checkpoint();
    await asDatabaseOwner(db, (tx) => tx.execute(sql`delete from audit_checkpoints`));
    const again = new Checkpointer({ db, signer, clock, dir });
    expect((await again.checkpoint())?.note).toBe(five!.note);
    expect((await latestCheckpoint(db))?.note).toBe(five!.note);
    await asDatabaseOwner(db, async (tx) => {
      await tx.execute(sql`delete from audit_checkpoints`);
      await tx.execute(sql`delete from audit_events where seq > 3`);
    });
    await expect(new Checkpointer({ db, signer, clock, dir }).checkpoint()).rejects.toThrow(
      /holds 3 events but this log signed a checkpoint of size 5/,
    );
  });

  it("get no fork extended once the database is ahead: by instances sharing the folder, or one holding its own", async () => {
    const a = new Checkpointer({ db, signer, clock, dir });
    const b = new Checkpointer({ db, signer, clock, dir });
    await append(0, 4);
    await a.checkpoint();
    await append(4, 3);
    expect((await b.checkpoint())?.treeSize).toBe(7);
    await deleteSevenRewriteSix();
    await append(7, 1);
    // a signed only 4 itself, but the folder it shares holds b's 7.
    await expect(a.checkpoint()).rejects.toThrow(/do not extend checkpoint 7/);
    await expect(b.checkpoint()).rejects.toThrow(/do not extend checkpoint 7/);
    // An instance that knows nothing outside the database signs the fork at 8; the others refuse
    // to extend it, and say so.
    expect((await new Checkpointer({ db, signer, clock, dir: undefined }).checkpoint())?.treeSize).toBe(8);
    await append(8, 1);
    await expect(a.checkpoint()).rejects.toThrow(/do not extend checkpoint 7/);
    expect((await readdir(dir)).sort()).toEqual(["4.note", "7.note"]);
  });

  it("are never replaced by another note of the same size", async () => {
    const cp = { treeSize: 3, rootHash: "", note: "a note\n", createdAt: clock.now() };
    await writeCheckpointFile(dir, cp);
    await writeCheckpointFile(dir, cp);
    await expect(writeCheckpointFile(dir, { ...cp, note: "another\n" })).rejects.toThrow(/forked/);
    expect(await readFile(join(dir, "3.note"), "utf8")).toBe("a note\n");
    expect(await readdir(dir)).toEqual(["3.note"]);
  });

  it("keep being signed past rows the services' role inserted, above or at the next size", async () => {
    const cp = new Checkpointer({ db, signer, clock, dir });
    await append(0, 3);
    await cp.checkpoint();
    for (const size of [Number.MAX_SAFE_INTEGER, 5]) {
      await db.execute(
        sql`insert into audit_checkpoints (tree_size, root_hash, note, frontier, created_at) values (${size}, 'x', 'x', '[]'::jsonb, now())`,
      );
    }
    await append(3, 2);
    const five = await cp.checkpoint();
    expect(five?.treeSize).toBe(5);
    expect(verifyCheckpoint(five!.note, vkey, ORIGIN).ok).toBe(true);
    expect(b64(five!.rootHash)).toEqual(await storedRoot(db, 5));
    expect(await readFile(join(dir, "5.note"), "utf8")).toBe(five!.note);
    await append(5, 1);
    const six = await new Checkpointer({ db, signer, clock, dir }).checkpoint();
    expect(six?.treeSize).toBe(6);
    expect(b64(six!.rootHash)).toEqual(await storedRoot(db, 6));
  });

  it("sign no leaf hash that is not its event's, and verify reports the row", async () => {
    const cp = new Checkpointer({ db, signer, clock, dir });
    await append(0, 3);
    await cp.checkpoint();
    await append(3, 3);
    await asDatabaseOwner(db, (tx) =>
      tx.execute(sql`update audit_events set leaf_hash = ${"00".repeat(32)} where seq = 5`),
    );
    await expect(cp.checkpoint()).rejects.toThrow(/leaf hash of seq 5/);
    expect((await latestCheckpoint(db))?.treeSize).toBe(3);
    expect(await verifyStored(db)).toMatchObject({
      ok: false,
      events: 4,
      brokenAt: { seq: 5, reason: "hash_mismatch" },
    });
  });
});

describeIntegration("two checkpointers racing on one database", ["postgres"], () => {
  let testDb: TestDb;
  let a: Db;
  let b: Db;
  let closeB: () => Promise<void>;

  beforeAll(async () => {
    const created = await createTestDatabase();
    testDb = created;
    a = created.handle.db;
    const second = createDb({ databaseUrl: created.url });
    b = second.db;
    closeB = () => second.close();
  });
  afterAll(async () => {
    await closeB?.();
    await testDb?.drop();
  });

  it("yield one series in which every checkpoint extends the one before", async () => {
    const clock = new FakeClock();
    const one = new Checkpointer({ db: a, signer, clock });
    const two = new Checkpointer({ db: b, signer, clock });
    for (let round = 0; round < 15; round++) {
      await Promise.all([
        appendEvents(
          a,
          Array.from({ length: 1 + (round % 4) }, (_, i) => sampleInput(round * 10 + i)),
        ),
        one.checkpoint(),
        two.checkpoint(),
        appendEvents(b, [sampleInput(round * 10 + 9)]),
        two.checkpoint(),
      ]);
    }
    await Promise.all([one.checkpoint(), two.checkpoint()]);
    const series = await a
      .select()
      .from(schema.auditCheckpoints)
      .orderBy(asc(schema.auditCheckpoints.treeSize));
    expect(series.length).toBeGreaterThan(1);
    for (const cp of series) {
      expect(verifyCheckpoint(cp.note, vkey).ok).toBe(true);
      expect(b64(cp.rootHash)).toEqual(await storedRoot(a, cp.treeSize));
    }
    for (let i = 1; i < series.length; i++) {
      const older = series[i - 1]!;
      const newer = series[i]!;
      const proof = await storedConsistencyProof(a, older.treeSize, newer.treeSize);
      expect(
        verifyConsistency(older.treeSize, newer.treeSize, b64(older.rootHash), b64(newer.rootHash), proof),
      ).toBe(true);
    }
    const [count] = await queryRows<{ n: number }>(a, sql`select count(*)::int as n from audit_events`);
    expect(series.at(-1)?.treeSize).toBe(count?.n);
  });
});

/** A database of the enclosing describe's own, handed to `use` before its tests; dropped after. */
function scratchDb(backend: (typeof dbBackends)[number], use: (db: Db) => void): void {
  let testDb: TestDb | undefined;
  beforeAll(async () => {
    testDb = await backend.open();
    use(testDb.handle.db);
  });
  afterAll(async () => {
    await testDb?.drop();
  });
}

// An owner who detaches (or empties) the newest month partition removes the log's newest events;
// appends then carry on from the older head and reuse seqs a signed checkpoint already covers.
// The checkpointer must say so instead of silently signing nothing, or signing a tree whose
// covered leaves the database no longer holds.
for (const backend of dbBackends) {
  describeIntegration(
    `Checkpointer after the newest events were removed (${backend.name})`,
    backend.needs,
    () => {
      let db: Db;
      scratchDb(backend, (d) => {
        db = d;
      });
      const clock = new FakeClock("2026-03-15T09:00:00Z");

      it("refuses to sign while the log is shorter than its latest checkpoint, or holds other leaves under it", async () => {
        const errors: unknown[] = [];
        const cp = new Checkpointer({ db, signer, clock, dir: undefined, onError: (e) => errors.push(e) });
        await appendEvents(
          db,
          Array.from({ length: 5 }, (_, i) => sampleInput(i)),
        );
        expect((await cp.checkpoint())?.treeSize).toBe(5);
        await asDatabaseOwner(db, (tx) => tx.execute(sql`delete from audit_events where seq > 3`));
        await expect(cp.checkpoint()).rejects.toThrow(/holds 3 events.*checkpoint of size 5/);
        // /v1/audit/verify: the chain that is left links up, but a signed checkpoint covers more.
        // Without the key nothing tells a signed checkpoint from a row the services' role inserted.
        expect(await verifyStored(db)).toMatchObject({ ok: true, events: 3 });
        expect(await verifyStored(db, { verifierKey: vkey })).toEqual({
          ok: false,
          events: 3,
          brokenAt: { seq: 4, id: "", reason: "seq_gap" },
        });
        // Appends carry on from seq 4: seqs 4 and 5 are other events than the ones signed.
        await appendEvents(
          db,
          Array.from({ length: 4 }, (_, i) => sampleInput(10 + i)),
        );
        await expect(cp.checkpoint()).rejects.toThrow(/no longer holds the leaves/);
        expect((await latestCheckpoint(db))?.treeSize).toBe(5);
      });
    },
  );
}

/**
 * The owner's rewrite the chain cannot see: seq 4's denial made an allow, and the chain and leaf
 * hash of every event of `events` (those after the one whose hash is `prev`) recomputed.
 */
async function allowSeqFour(tx: Db, prev: string, events: readonly StoredEvent[]): Promise<void> {
  for (const e of events) {
    const changed = e.seq === 4 ? { ...e, decision: "allow" as const, reason: null } : e;
    const canonical = canonicalEvent(changed);
    const hash = chainHash(prev, canonical);
    await tx.execute(
      sql`update audit_events set decision = ${changed.decision}, reason = ${changed.reason}, prev_hash = ${prev}, hash = ${hash}, leaf_hash = ${leafHashHex(canonical)} where seq = ${e.seq}`,
    );
    prev = hash;
  }
}

// The owner's rewrite the chain cannot see: an event changed and every chain and leaf hash after
// it recomputed. The checkpoints the log's key signed still hold the old roots.
for (const backend of dbBackends) {
  describeIntegration(`verifyStored against the signed checkpoints (${backend.name})`, backend.needs, () => {
    let db: Db;
    scratchDb(backend, (d) => {
      db = d;
    });
    const clock = new FakeClock("2026-03-15T09:00:00Z");

    it("reports events a signed checkpoint covers rewritten with every chain and leaf hash recomputed", async () => {
      const cp = new Checkpointer({ db, signer, clock, dir: undefined });
      await appendEvents(db, [sampleInput(0), sampleInput(1)]);
      expect((await cp.checkpoint())?.treeSize).toBe(2);
      await appendEvents(db, [sampleInput(2), sampleInput(3), sampleInput(4)]);
      expect((await cp.checkpoint())?.treeSize).toBe(5);
      await appendEvents(db, [sampleInput(5)]);
      // A row the services' role may insert, not signed by the log's key: passed over.
      await db.execute(
        sql`insert into audit_checkpoints (tree_size, root_hash, note, frontier, created_at) values (6, 'x', 'x', '[]'::jsonb, now())`,
      );
      expect(await verifyStored(db, { verifierKey: vkey })).toMatchObject({ ok: true, events: 6 });
      // The owner turns seq 4's denial into an allow and recomputes everything from it on, and
      // the stored roots too: only the signed notes are left as they were.
      const events: StoredEvent[] = [];
      for await (const e of streamEvents(db, { fromSeq: 3 })) events.push(e);
      await asDatabaseOwner(db, async (tx) => {
        await allowSeqFour(tx, events[0]!.hash, events.slice(1));
        await tx.execute(sql`update audit_checkpoints set root_hash = 'rewritten'`);
      });
      expect(await verifyStored(db)).toMatchObject({ ok: true, events: 6 });
      // The first event after the newest checkpoint that still matches (size 2).
      expect(await verifyStored(db, { verifierKey: vkey, batchSize: 2 })).toEqual({
        ok: false,
        events: 2,
        brokenAt: { seq: 3, id: events[0]!.id, reason: "checkpoint_mismatch" },
      });
    });
  });
}

// An owner who forges an archive: the events before seq K dropped, an `audit_archives` row of its
// own saying 1..K were retired. The live log then starts after seq 1, and verify compared no root
// at all: every event the signed checkpoints cover could be rewritten, chain and leaves recomputed.
for (const backend of dbBackends) {
  describeIntegration(`verifyStored after a forged archive (${backend.name})`, backend.needs, () => {
    let db: Db;
    scratchDb(backend, (d) => {
      db = d;
    });
    const clock = new FakeClock("2026-03-15T09:00:00Z");

    it("still compares the live events with every checkpoint signed after the archive's end", async () => {
      const cp = new Checkpointer({ db, signer, clock, dir: undefined });
      await appendEvents(db, [sampleInput(0), sampleInput(1)]);
      expect((await cp.checkpoint())?.treeSize).toBe(2);
      await appendEvents(db, [sampleInput(2), sampleInput(3), sampleInput(4)]);
      const five = await cp.checkpoint();
      expect(five?.treeSize).toBe(5);
      await appendEvents(db, [sampleInput(5)]);
      const events: StoredEvent[] = [];
      for await (const e of streamEvents(db)) events.push(e);
      const held = [{ treeSize: 5, note: five!.note }];
      // The tree of seq 1, as the owner could work it out before dropping it: the true frontier.
      const frontier = [Buffer.from(eventLeafHash(events[0]!)).toString("base64")];
      await asDatabaseOwner(db, async (tx) => {
        await allowSeqFour(tx, events[2]!.hash, events.slice(3));
        await tx.execute(sql`delete from audit_events where seq = 1`);
        await tx.execute(
          sql`insert into audit_archives (from_seq, to_seq, head, months, checkpoint_size, frontier, file_sha256, archived_at)
              values (1, 1, ${events[0]!.hash}, '[]'::jsonb, 2, ${JSON.stringify(frontier)}::jsonb, 'forged', now())`,
        );
      });
      expect(await verifyStored(db)).toMatchObject({ ok: true, events: 5 });
      // Checkpoint 2 still matches; checkpoint 5 no longer does.
      const atThree = {
        ok: false,
        events: 1,
        brokenAt: { seq: 3, id: events[2]!.id, reason: "checkpoint_mismatch" },
      };
      expect(await verifyStored(db, { verifierKey: vkey, batchSize: 2 })).toEqual(atThree);
      // The stored checkpoints deleted too (all, or all but the newest): the held one still covers it.
      await asDatabaseOwner(db, (tx) => tx.execute(sql`delete from audit_checkpoints where tree_size = 2`));
      const atTwo = {
        ok: false,
        events: 0,
        brokenAt: { seq: 2, id: events[1]!.id, reason: "checkpoint_mismatch" },
      };
      expect(await verifyStored(db, { verifierKey: vkey, held })).toEqual(atTwo);
      await asDatabaseOwner(db, (tx) => tx.execute(sql`delete from audit_checkpoints`));
      expect(await verifyStored(db, { verifierKey: vkey, held })).toEqual(atTwo);
      // An archive row with no frontier, or one of the wrong shape, vouches for nothing after it.
      for (const forged of [sql`null`, sql`'["AAAA"]'::jsonb`, sql`'{"a":1}'::jsonb`]) {
        await asDatabaseOwner(db, (tx) => tx.execute(sql`update audit_archives set frontier = ${forged}`));
        expect(await verifyStored(db, { verifierKey: vkey, held })).toEqual(atTwo);
      }
    });
  });
}
