import { spawn } from "node:child_process";
import { once } from "node:events";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import {
  acquireDataDirLock,
  DataDirLockedError,
  LOCK_FILE,
  loadDevSecrets,
  readLockHolder,
} from "@phaselock/core";
import { spawnLockHolder } from "@phaselock/testkit/lock-holder";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runBackupCli, runMigrateCli, runRestoreCli } from "./cli.ts";
import { createDb } from "./client.ts";
import { EmbeddedDatabaseUnopenableError, openDb } from "./embedded.ts";
import { queryRows } from "./sql.ts";

const collect = () => {
  let text = "";
  const stream = new Writable({
    write(chunk, _enc, done) {
      text += String(chunk);
      done();
    },
  });
  return { stream, text: () => text };
};
/** The notes of the seeded `backup_marker` table in the embedded database of `dataDir`. */
async function markerNotes(dataDir: string): Promise<string[]> {
  const handle = await openDb({ dataDir });
  try {
    const rows = await queryRows<{ note: string }>(handle.db, sql`select note from backup_marker`);
    return rows.map((r) => r.note);
  } finally {
    await handle.close();
  }
}

const io = () => {
  const stdout = collect();
  const stderr = collect();
  return { io: { stdout: stdout.stream, stderr: stderr.stream }, out: stdout.text, err: stderr.text };
};
const mode = (path: string): number => statSync(path).mode & 0o777;

/** Every path under `dir`, the directory itself included. */
const walk = (dir: string): { path: string; dir: boolean }[] => [
  { path: dir, dir: true },
  ...readdirSync(dir, { withFileTypes: true, recursive: true }).map((e) => ({
    path: join(e.parentPath, e.name),
    dir: e.isDirectory(),
  })),
];

describe("the embedded data directory belongs to one process", () => {
  let root: string;
  /** A PGlite directory with one marker row (unmigrated: migrating is slow); tests copy it. */
  let seeded: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "phaselock-embedded-"));
    seeded = join(root, "seeded");
    const lock = acquireDataDirLock(seeded, { command: "test seed" });
    const handle = await openDb({ dataDir: seeded });
    await handle.db.execute(sql`create table backup_marker (note text)`);
    await handle.db.execute(sql`insert into backup_marker values ('kept')`);
    await handle.close();
    lock.release();
  });
  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  const copy = (name: string): string => {
    const dir = join(root, name);
    cpSync(seeded, dir, { recursive: true });
    return dir;
  };

  it("refuses a second process, naming the holder's pid, command, start and ports", async () => {
    const dir = copy("held");
    const holder = await spawnLockHolder(dir, { command: "pnpm start", ports: { tokenService: 4123 } });
    try {
      let caught: unknown;
      try {
        acquireDataDirLock(dir, { command: "second" });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(DataDirLockedError);
      const text = (caught as Error).message;
      expect(text).toContain(`pid ${holder.pid}`);
      expect(text).toContain("pnpm start");
      expect(text).toContain("tokenService 4123");
      expect(text).toMatch(/since \d{4}-\d\d-\d\dT/);
      // And nothing opens the PGlite files while it is held.
      expect(() => createDb({ dataDir: dir })).toThrow(DataDirLockedError);
    } finally {
      await holder.stop();
    }
    // Released on SIGTERM: the next process gets it.
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
    acquireDataDirLock(dir, { command: "third" }).release();
  });

  it("takes over the lock of a killed process", async () => {
    const dir = copy("stale");
    const holder = await spawnLockHolder(dir, { command: "pnpm start" });
    await holder.kill();
    expect(readLockHolder(dir)?.pid).toBe(holder.pid);
    const lock = acquireDataDirLock(dir, { command: "after a crash" });
    expect(readLockHolder(dir)).toMatchObject({ pid: process.pid, command: "after a crash" });
    lock.release();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });

  it("takes over a killed holder's lock whose pid another process has taken since, or from before a reboot", async () => {
    const dir = copy("pid-reused");
    const holder = await spawnLockHolder(dir, { command: "pnpm start" });
    await holder.kill();
    const stale = readFileSync(join(dir, LOCK_FILE), "utf8");
    // An unrelated live process now at the holder's pid (modelled by writing its pid in the lock).
    const other = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
    await once(other, "spawn");
    try {
      for (const processStart of [undefined, "0b1d-before-the-reboot/4242"]) {
        const lock = JSON.parse(stale) as Record<string, unknown>;
        lock.pid = other.pid;
        if (processStart) lock.processStart = processStart;
        writeFileSync(join(dir, LOCK_FILE), JSON.stringify(lock));
        const mine = acquireDataDirLock(dir, { command: "after a crash" });
        expect(readLockHolder(dir)).toMatchObject({ pid: process.pid, command: "after a crash" });
        mine.release();
      }
      expect(other.exitCode).toBeNull();
    } finally {
      other.kill();
    }
  });

  it("never takes over a live holder in another PID namespace (another container of the pod, same host name), whose pid names nobody there", async () => {
    const dir = copy("other-namespace");
    const holder = await spawnLockHolder(dir, { command: "pnpm start" });
    try {
      // As a sidecar sharing the volume and the pod's host name sees it: its own PID namespace,
      // where the holder's pid is not alive.
      const fromSidecar = () =>
        acquireDataDirLock(dir, {
          command: "pnpm db:backup",
          pidNamespace: "pid:[4026532999]",
          isAlive: () => false,
        });
      expect(fromSidecar).toThrow(DataDirLockedError);
      expect(fromSidecar).toThrow(`pid ${holder.pid} on ${hostname()} in another PID namespace`);
      expect(readLockHolder(dir)?.pid).toBe(holder.pid);
    } finally {
      await holder.stop();
    }
  });

  it("db:migrate, db:backup and db:restore refuse while a service holds the directory", async () => {
    const dir = copy("cli-held");
    const holder = await spawnLockHolder(dir, { command: "pnpm start", ports: { tokenService: 4000 } });
    try {
      const env = { DATA_DIR: dir };
      for (const run of [
        (o: ReturnType<typeof io>["io"]) => runMigrateCli(env, o),
        (o: ReturnType<typeof io>["io"]) => runBackupCli(["--out", join(root, "never.tar.gz")], env, o),
        (o: ReturnType<typeof io>["io"]) => runRestoreCli([join(root, "never.tar.gz"), "--force"], env, o),
      ]) {
        const c = io();
        expect(await run(c.io)).toBe(1);
        expect(c.err()).toContain(`pid ${holder.pid}`);
        expect(c.err()).toContain("pnpm start");
      }
      expect(existsSync(join(root, "never.tar.gz"))).toBe(false);
    } finally {
      await holder.stop();
    }
    const c = io();
    expect(await runMigrateCli({ DATA_DIR: dir }, c.io)).toBe(0);
    expect(c.out()).toContain("migration(s) to embedded PGlite");
  }, 120_000);

  it("keeps the directory 0700 and its files 0600, fixing lax modes on start", async () => {
    const dir = copy("modes");
    // As PGlite leaves its files (0666), and worse.
    for (const entry of walk(dir)) chmodSync(entry.path, entry.dir ? 0o777 : 0o666);
    writeFileSync(join(dir, "dev-secrets.json.extra"), "x", { mode: 0o644 });

    const lock = acquireDataDirLock(dir, { command: "modes" });
    loadDevSecrets(dir);
    const handle = await openDb({ dataDir: dir });
    await handle.db.execute(sql`create table written_after_open (x int)`);
    await handle.close();
    const lockMode = mode(join(dir, LOCK_FILE));
    lock.release();

    expect(lockMode).toBe(0o600);
    const lax = walk(dir).filter((e) => mode(e.path) !== (e.dir ? 0o700 : 0o600));
    expect(lax.map((e) => `${e.path} ${mode(e.path).toString(8)}`)).toEqual([]);
    expect(mode(join(dir, "dev-secrets.json"))).toBe(0o600);

    // A brand-new directory is created private.
    const fresh = join(root, "fresh");
    acquireDataDirLock(fresh, { command: "fresh" }).release();
    expect(mode(fresh)).toBe(0o700);
  });

  it("says how to recover when the embedded database cannot open", async () => {
    const dir = copy("corrupt");
    writeFileSync(join(dir, "global", "pg_control"), Buffer.alloc(8192, 0x41));
    const error = await openDb({ dataDir: dir }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(EmbeddedDatabaseUnopenableError);
    const text = (error as Error).message;
    expect(text).toContain(`the embedded database in ${dir} cannot be opened`);
    expect(text).toContain("pnpm db:restore <backup.tar.gz> --force");
    expect(text).toContain(`mv ${dir} ${dir}.broken`);
    expect(text).not.toMatch(/\n\s+at /); // no stack

    const c = io();
    expect(await runMigrateCli({ DATA_DIR: dir }, c.io)).toBe(1);
    expect(c.err()).toContain("pnpm db:restore");
  });

  it("names PGlite's own failure, which is no Error (an Emscripten errno), rather than [object Object]", () => {
    const text = new EmbeddedDatabaseUnopenableError("/d", { name: "ErrnoError", errno: 44 }).message;
    expect(text).toContain("cannot be opened (ErrnoError errno 44)");
    expect(new EmbeddedDatabaseUnopenableError("/d", { state: "odd" }).message).toContain(
      '({"state":"odd"})',
    );
  });

  it("backs up and restores the embedded database, refusing to overwrite without --force", async () => {
    const dir = copy("to-back-up");
    loadDevSecrets(dir);
    const file = join(root, "backup.tar.gz");
    // Over a file already there, readable by all (a copy made for a transfer): the backup holds
    // the dev secrets, so it is 0600 all the same, and nothing is left beside it.
    writeFileSync(file, "an older backup", { mode: 0o644 });
    chmodSync(file, 0o644);
    const b = io();
    expect(await runBackupCli(["--out", file], { DATA_DIR: dir }, b.io)).toBe(0);
    expect(b.out()).toContain(file);
    expect(mode(file)).toBe(0o600);
    expect(readdirSync(root).filter((n) => n.startsWith("backup.tar.gz"))).toEqual(["backup.tar.gz"]);

    const fresh = join(root, "restored");
    const r = io();
    expect(await runRestoreCli([file], { DATA_DIR: fresh }, r.io)).toBe(0);
    expect(await markerNotes(fresh)).toEqual(["kept"]);
    // The backup's dev secrets come with it: its stored keys are encrypted with that KEK.
    expect(loadDevSecrets(fresh).secrets).toEqual(loadDevSecrets(dir).secrets);
    expect(readLockHolder(fresh)).toBeUndefined();

    const again = io();
    expect(await runRestoreCli([file], { DATA_DIR: fresh }, again.io)).toBe(1);
    expect(again.err()).toContain("--force");
    const forced = io();
    expect(await runRestoreCli([file, "--force"], { DATA_DIR: fresh }, forced.io)).toBe(0);
    expect(forced.out()).toMatch(/replaced files are in .*restored\.replaced-/);
  });

  it("opens a DATA_DIR given as a symlink, rather than calling its database damaged", async () => {
    const real = copy("symlinked");
    const link = join(root, "symlink-to-data");
    symlinkSync(real, link);
    const lock = acquireDataDirLock(link, { command: "via a symlink" });
    try {
      const handle = await openDb({ dataDir: link });
      const rows = await queryRows<{ note: string }>(handle.db, sql`select note from backup_marker`);
      await handle.close();
      expect(rows).toEqual([{ note: "kept" }]);
      // One lock, whichever name: the link's is the directory's.
      expect(readLockHolder(real)?.command).toBe("via a symlink");
    } finally {
      lock.release();
    }
  });

  it("restores into a DATA_DIR given as a symlink beside the directory it names, not beside the link (another filesystem: EXDEV)", async () => {
    const file = join(root, "for-link.tar.gz");
    expect(await runBackupCli(["--out", file], { DATA_DIR: copy("for-link") }, io().io)).toBe(0);
    const real = copy("link-target");
    mkdirSync(join(root, "links"));
    const link = join(root, "links", "data");
    symlinkSync(real, link);
    const r = io();
    expect(await runRestoreCli([file, "--force"], { DATA_DIR: link }, r.io)).toBe(0);
    expect(r.out()).toContain(`the replaced files are in ${real}.replaced-`);
    expect(readdirSync(join(root, "links"))).toEqual(["data"]);
  });

  it("clears what a restore killed mid-way left beside the directory (the backup's database and dev secrets)", async () => {
    const file = join(root, "for-leftover.tar.gz");
    expect(await runBackupCli(["--out", file], { DATA_DIR: copy("for-leftover") }, io().io)).toBe(0);
    mkdirSync(join(root, "parent"));
    const dir = join(root, "parent", "data");
    const leftover = join(root, "parent", ".data.restoring-999999");
    mkdirSync(leftover, { mode: 0o700 });
    writeFileSync(join(leftover, "dev-secrets.json"), "{}", { mode: 0o600 });
    // Another directory's staging folder is not this one's to clear.
    const other = join(root, "parent", ".other.restoring-999999");
    mkdirSync(other, { mode: 0o700 });
    const r = io();
    expect(await runRestoreCli([file], { DATA_DIR: dir }, r.io), r.err()).toBe(0);
    expect(readdirSync(join(root, "parent")).sort()).toEqual([".other.restoring-999999", "data"]);
  });

  it("refuses a backup from a newer schema (migrations this checkout lacks), replacing nothing", async () => {
    const newer = copy("newer-schema");
    const lock = acquireDataDirLock(newer, { command: "test" });
    const h = await openDb({ dataDir: newer });
    await h.db.execute(sql`create schema drizzle`);
    await h.db.execute(
      sql`create table drizzle.__drizzle_migrations (id serial, hash text, created_at bigint)`,
    );
    // 2100-01-01: later than any committed migration.
    await h.db.execute(
      sql`insert into drizzle.__drizzle_migrations (hash, created_at) values ('later', 4102444800000)`,
    );
    await h.close();
    lock.release();
    const file = join(root, "newer.tar.gz");
    expect(await runBackupCli(["--out", file], { DATA_DIR: newer }, io().io)).toBe(0);

    const dir = copy("kept-on-newer-restore");
    const r = io();
    expect(await runRestoreCli([file, "--force"], { DATA_DIR: dir }, r.io)).toBe(1);
    expect(r.err()).toContain(`${file} was made by a newer Phaselock`);
    expect(r.err()).toContain("2100-01-01T00:00:00.000Z");
    expect(readdirSync(root).filter((n) => n.includes("kept-on-newer-restore"))).toEqual([
      "kept-on-newer-restore",
    ]);
    expect(await markerNotes(dir)).toEqual(["kept"]);
  });

  it("refuses a backup cut short (a copy or download that stopped), naming why, and keeps the database it would replace", async () => {
    const file = join(root, "cut.tar.gz");
    expect(await runBackupCli(["--out", file], { DATA_DIR: copy("to-cut") }, io().io)).toBe(0);
    const whole = readFileSync(file);
    writeFileSync(file, whole.subarray(0, whole.length - 100));

    const dir = copy("kept-on-bad-restore");
    const r = io();
    expect(await runRestoreCli([file, "--force"], { DATA_DIR: dir }, r.io)).toBe(1);
    expect(r.err()).toContain(
      `${file} is not a usable backup (not a whole gzip file: unexpected end of file)`,
    );
    expect(r.err()).not.toMatch(/\n\s+at /);
    // Nothing moved aside, nothing left staged, the old rows still there.
    expect(readdirSync(root).filter((n) => n.includes("kept-on-bad-restore"))).toEqual([
      "kept-on-bad-restore",
    ]);
    expect(await markerNotes(dir)).toEqual(["kept"]);
  });

  it("refuses a file that is no backup at all (an audit export given by mistake), naming why, and keeps the database it would replace", async () => {
    // PGlite took such a file for gzip and gunzipped it unawaited: the process ended on an
    // unhandled TypeError after 'is not a usable backup ()'.
    const file = join(root, "audit-export.ndjson");
    const events = Array.from(
      { length: 20 },
      (_, seq) => `{"seq":${seq + 1},"type":"access","decision":"allow"}`,
    );
    writeFileSync(file, `{"type":"phaselock.audit.export","version":1}\n${events.join("\n")}\n`);
    const dir = copy("kept-on-no-backup");
    const r = io();
    expect(await runRestoreCli([file, "--force"], { DATA_DIR: dir }, r.io)).toBe(1);
    expect(r.err()).toBe(
      `db:restore failed: ${file} is not a usable backup (neither a gzip file nor a tar archive: pnpm db:backup writes a .tar.gz)\n`,
    );
    expect(readdirSync(root).filter((n) => n.includes("kept-on-no-backup"))).toEqual(["kept-on-no-backup"]);
    expect(await markerNotes(dir)).toEqual(["kept"]);
  });
});
