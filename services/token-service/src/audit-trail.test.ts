import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { appendEvents, CHECKPOINT_LOCK_KEY, Checkpointer, CheckpointFolderError } from "@phaselock/audit";
import { FakeClock } from "@phaselock/core";
import type { PgliteHandle } from "@phaselock/db";
import { createMemoryDb, createTestDatabase, type TestDatabase } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { sql } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  AuditKeyMissingError,
  AuditKeyMissingFromFolderError,
  loadAuditSigner,
  TokenServiceAuditTrail,
} from "./audit-trail.ts";

const ORIGIN = "tokens.test/audit";

describe("the audit key at start", () => {
  let handle: PgliteHandle;
  const kek = new Uint8Array(randomBytes(32));
  beforeEach(async () => {
    handle = await createMemoryDb();
  });
  afterEach(async () => {
    await handle.close();
  });

  it("is created once for a new log and loaded after", async () => {
    const first = await loadAuditSigner(handle.db, kek, ORIGIN);
    const again = await loadAuditSigner(handle.db, kek, ORIGIN);
    expect(again.verifierKey).toBe(first.verifierKey);
  });

  it("refuses an origin the log was not started under, saying which setting moved it and what it holds", async () => {
    const { signer } = await loadAuditSigner(handle.db, kek, ORIGIN);
    const clock = new FakeClock("2026-01-01T08:00:00Z");
    await appendEvents(handle.db, [{ type: "audit.test", at: clock.now() }]);
    expect(
      await new Checkpointer({ db: handle.db, signer, clock, dir: undefined }).checkpoint(),
    ).not.toBeNull();
    // As after an upgrade that derives TOKEN_SERVICE_URL from TOKEN_SERVICE_PORT (4100 here).
    const err = await loadAuditSigner(handle.db, kek, "127.0.0.1:4100/audit").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuditKeyMissingError);
    expect((err as Error).message).toContain("TOKEN_SERVICE_URL");
    expect((err as Error).message).toContain(`(audit_keys holds: ${ORIGIN})`);
  });

  it("refuses to start (no new key) when checkpoints exist but their key's row is gone", async () => {
    const { signer } = await loadAuditSigner(handle.db, kek, ORIGIN);
    const clock = new FakeClock("2026-01-01T09:00:00Z");
    await appendEvents(handle.db, [{ type: "audit.test", at: clock.now() }]);
    const cp = new Checkpointer({ db: handle.db, signer, clock, dir: undefined });
    expect(await cp.checkpoint()).not.toBeNull();
    await handle.db.execute(sql`delete from audit_keys`);

    await expect(loadAuditSigner(handle.db, kek, ORIGIN)).rejects.toThrow(AuditKeyMissingError);
    await expect(loadAuditSigner(handle.db, kek, ORIGIN)).rejects.toThrow(/restore the audit_keys row/);
    // … and an origin changed under an existing log is the same refusal.
    await expect(loadAuditSigner(handle.db, kek, "other.test/audit")).rejects.toThrow(AuditKeyMissingError);
    const rows = await handle.db.execute(sql`select count(*)::int as n from audit_keys`);
    expect((rows as unknown as { rows: { n: number }[] }).rows[0]?.n).toBe(0);
  });
});

describe("the checkpoint folder at start and after", () => {
  let handle: PgliteHandle;
  let root: string;
  const kek = new Uint8Array(randomBytes(32));
  const clock = new FakeClock("2026-01-01T08:00:00Z");
  const noTimer = { setInterval: () => 0, clearInterval: () => {} };
  const trailIn = (dir: string) =>
    new TokenServiceAuditTrail({ db: handle.db, kek, origin: ORIGIN, clock, dir, timers: noTimer });
  beforeEach(async () => {
    handle = await createMemoryDb();
    root = await mkdtemp(join(tmpdir(), "phaselock-cpdir-"));
  });
  afterEach(async () => {
    await handle.close();
    await rm(root, { recursive: true, force: true });
  });

  it("refuses to start, naming the setting, when the folder cannot be written, before making a key", async () => {
    // A path no process can create (beneath a file): as a read-only image path is in a container,
    // whoever runs the test (root ignores permission bits).
    await writeFile(join(root, "file"), "");
    const dir = join(root, "file", "checkpoints");
    const trail = trailIn(dir);
    const err = await trail.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CheckpointFolderError);
    expect((err as Error).message).toContain(`${dir} (AUDIT_CHECKPOINT_DIR) cannot be written (ENOTDIR)`);
    expect((err as Error).message).toContain("mount a volume there");
    const rows = await handle.db.execute(sql`select count(*)::int as n from audit_keys`);
    expect((rows as unknown as { rows: { n: number }[] }).rows[0]?.n).toBe(0);
  });

  it("signs nothing while the folder cannot be written, and carries on once it can", async () => {
    const dir = join(root, "checkpoints");
    const trail = trailIn(dir);
    await trail.start();
    await appendEvents(handle.db, [{ type: "audit.test", at: clock.now() }]);
    // The volume goes away under the running service: the folder is now a file.
    await rm(dir, { recursive: true });
    await writeFile(dir, "");
    await expect(trail.checkpoint()).rejects.toThrow(CheckpointFolderError);
    const stored = await handle.db.execute(sql`select count(*)::int as n from audit_checkpoints`);
    expect((stored as unknown as { rows: { n: number }[] }).rows[0]?.n).toBe(0);

    await rm(dir);
    const cp = await trail.checkpoint();
    expect(cp?.treeSize).toBe(1);
    expect(await readFile(join(dir, "1.note"), "utf8")).toBe(cp?.note);
    await trail.stop();
  });

  it("refuses a new key when the key's row and every checkpoint row are gone but the folder holds the log's notes", async () => {
    // An owner who rewrites the log and deletes both, then restarts the service: a new key would
    // sign the new history, and the folder's notes (another key's) would never be checked again.
    const dir = join(root, "checkpoints");
    const trail = trailIn(dir);
    await trail.start();
    await appendEvents(handle.db, [{ type: "audit.test", at: clock.now() }]);
    expect((await trail.checkpoint())?.treeSize).toBe(1);
    await trail.stop();
    await handle.db.transaction(async (tx) => {
      await tx.execute(sql`set local session_replication_role = replica`);
      await tx.execute(sql`delete from audit_checkpoints`);
      await tx.execute(sql`delete from audit_keys`);
    });
    const err = await trailIn(dir)
      .start()
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuditKeyMissingFromFolderError);
    expect((err as Error).message).toContain(
      `${dir} (AUDIT_CHECKPOINT_DIR) holds checkpoints of the log "${ORIGIN}"`,
    );
    expect((err as Error).message).toContain("move the folder aside");
    const rows = await handle.db.execute(sql`select count(*)::int as n from audit_keys`);
    expect((rows as unknown as { rows: { n: number }[] }).rows[0]?.n).toBe(0);
    // Another log's notes, or a folder moved aside, are no objection: a new log starts.
    await writeFile(join(dir, "7.note"), "other.test/audit\n7\nAAAA\n\n");
    await rm(join(dir, "1.note"));
    const fresh = trailIn(dir);
    await fresh.start();
    await fresh.stop();
  });
  it("a new log (a fresh database, shorter than the folder's notes) moves an earlier log's notes aside, keeps them, records it and signs its own", async () => {
    // `pnpm start` on the embedded database, then on a fresh DATABASE_URL: one default folder.
    const dir = join(root, "checkpoints");
    const earlier = trailIn(dir);
    await earlier.start();
    await appendEvents(
      handle.db,
      [1, 2, 3].map(() => ({ type: "audit.test", at: clock.now() })),
    );
    const old = await earlier.checkpoint();
    expect(old?.treeSize).toBe(3);
    await earlier.stop();
    await writeFile(join(dir, "5.note"), "other.test/audit\n5\nAAAA\n\n");
    await handle.close();
    handle = await createMemoryDb();
    // As the token service does before its trail starts: the first signing key's event.
    await appendEvents(handle.db, [{ type: "audit.test", at: clock.now() }]);

    const notices: string[] = [];
    const trail = () =>
      new TokenServiceAuditTrail({
        db: handle.db,
        kek,
        origin: ORIGIN,
        clock,
        dir,
        timers: noTimer,
        onNotice: (m) => notices.push(m),
      });
    const fresh = trail();
    await fresh.start();
    const entries = await readdir(dir);
    const aside = entries.filter((e) => e.startsWith("superseded-"));
    expect(aside).toHaveLength(1);
    expect(entries.filter((e) => e.endsWith(".note"))).toEqual([]);
    expect((await readdir(join(dir, aside[0]!))).sort()).toEqual(["3.note", "5.note"]);
    expect(await readFile(join(dir, aside[0]!, "3.note"), "utf8")).toBe(old?.note);
    expect(notices).toEqual([
      `a new audit log: the 2 checkpoint note(s) of an earlier one in the folder were moved to ${join(dir, aside[0]!)}`,
    ]);
    const recorded = await handle.db.execute(sql`select type, data from audit_events order by seq`);
    expect((recorded as unknown as { rows: { type: string; data: unknown }[] }).rows).toEqual([
      { type: "audit.test", data: {} },
      { type: "audit.notes_superseded", data: { moved: 2, folder: aside[0], newest: 3 } },
    ]);
    // Its own checkpoints land beside the kept ones, even at a size the earlier log had used.
    await appendEvents(handle.db, [{ type: "audit.test", at: clock.now() }]);
    const own = await fresh.checkpoint();
    expect(own?.treeSize).toBe(3);
    expect(await readFile(join(dir, "3.note"), "utf8")).toBe(own?.note);
    await fresh.stop();
    // A restart of that log moves nothing.
    const again = trail();
    await again.start();
    await again.stop();
    expect(notices).toHaveLength(1);
    expect(await readFile(join(dir, "3.note"), "utf8")).toBe(own?.note);
  });
});

describeIntegration("a new log's key and the earlier notes moved aside (Postgres)", ["postgres"], () => {
  let db: TestDatabase;
  let root: string;
  const kek = new Uint8Array(randomBytes(32));
  beforeAll(async () => {
    db = await createTestDatabase({ poolSize: 3 });
    root = await mkdtemp(join(tmpdir(), "phaselock-cplock-"));
  });
  afterAll(async () => {
    await db?.drop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it("happen under the checkpointer's lock: no key is visible, and no note moves, while a checkpoint holds it", async () => {
    const dir = join(root, "checkpoints");
    await mkdir(dir);
    await writeFile(join(dir, "3.note"), `${ORIGIN}\n3\nAAAA\n\n`);
    let release!: () => void;
    const released = new Promise<void>((r) => {
      release = r;
    });
    let held!: () => void;
    const holding = new Promise<void>((r) => {
      held = r;
    });
    // Another instance in the middle of signing a checkpoint.
    const signing = db.handle.db.transaction(async (tx) => {
      await tx.execute(sql.raw(`select pg_advisory_xact_lock(${CHECKPOINT_LOCK_KEY})`));
      held();
      await released;
    });
    await holding;
    const loading = loadAuditSigner(db.handle.db, kek, ORIGIN, dir);
    // Until the lock is released the new key's transaction waits on it (seen in pg_locks).
    await expect
      .poll(async () => {
        const rows = (await db.handle.db.execute(
          sql`select count(*)::int as n from pg_locks where locktype = 'advisory' and not granted and database = (select oid from pg_database where datname = current_database())`,
        )) as unknown as { n: number }[];
        return rows[0]?.n;
      })
      .toBe(1);
    const keys = (await db.handle.db.execute(sql`select count(*)::int as n from audit_keys`)) as unknown as {
      n: number;
    }[];
    expect(keys[0]?.n).toBe(0);
    expect(await readdir(dir)).toEqual(["3.note"]);
    release();
    await signing;
    const loaded = await loading;
    expect(loaded.superseded?.moved).toBe(1);
    expect((await readdir(dir)).filter((e) => e.endsWith(".note"))).toEqual([]);
  });
});
