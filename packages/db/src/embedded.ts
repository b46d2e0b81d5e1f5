import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { gunzipSync } from "node:zlib";
import { PGlite } from "@electric-sql/pglite";
import { LOCK_FILE, securePrivateDir } from "@phaselock/core";
import { type CreateDbOptions, createDb, type DbHandle } from "./client.ts";
import { latestMigrationMillis } from "./migrate.ts";

/** Thrown when the embedded database's files cannot be opened; the message says how to recover. */
/**
 * A failure in words: PGlite's file system throws objects that are no `Error` (an Emscripten
 * `ErrnoError` carries `errno`, maybe a `code`), which `String` turns into "[object Object]".
 */
function causeText(cause: unknown): string {
  if (cause instanceof Error) return cause.message;
  if (cause !== null && typeof cause === "object") {
    const o = cause as Record<string, unknown>;
    const parts = [
      o.name,
      o.code,
      o.errno === undefined ? undefined : `errno ${String(o.errno)}`,
      o.message,
    ].filter((p): p is string | number => typeof p === "string" || typeof p === "number");
    if (parts.length > 0) return parts.join(" ");
    try {
      return JSON.stringify(cause).slice(0, 200);
    } catch {}
  }
  return String(cause);
}

export class EmbeddedDatabaseUnopenableError extends Error {
  readonly code = "embedded_database_unopenable";
  readonly dataDir: string;
  constructor(dataDir: string, cause: unknown) {
    const why = causeText(cause);
    super(
      [
        `the embedded database in ${dataDir} cannot be opened (${why}).`,
        "To recover, either:",
        "  - restore the latest backup (made by `pnpm db:backup`):",
        "      pnpm db:restore <backup.tar.gz> --force",
        "    (the damaged files are moved aside, not deleted), or",
        "  - move the directory aside and start fresh; `pnpm start` re-seeds the demo data:",
        `      mv ${dataDir} ${dataDir}.broken`,
      ].join("\n"),
      { cause },
    );
    this.dataDir = dataDir;
    this.name = "EmbeddedDatabaseUnopenableError";
  }
}

/**
 * `createDb`, then, for PGlite in a directory, waits until it has opened, so a damaged directory
 * fails here with `EmbeddedDatabaseUnopenableError` rather than as a raw abort on the first query.
 */
export async function openDb(opts: CreateDbOptions): Promise<DbHandle> {
  const handle = createDb(opts);
  if (handle.kind !== "pglite" || opts.dataDir === undefined) return handle;
  try {
    await handle.client.waitReady;
    await handle.client.query("select 1");
  } catch (err) {
    await handle.client.close().catch(() => {});
    throw new EmbeddedDatabaseUnopenableError(opts.dataDir, err);
  }
  securePrivateDir(opts.dataDir);
  return handle;
}

/** True when `dataDir` holds a PGlite (Postgres) database. */
export const hasEmbeddedDatabase = (dataDir: string): boolean => existsSync(join(dataDir, "PG_VERSION"));

/**
 * Writes the embedded database as a gzipped tarball (PGlite's `dumpDataDir`: the whole
 * directory, dev secrets included, hence mode 0600). The caller holds the data directory's
 * lock, so nothing writes while it is copied.
 */
export async function backupEmbedded(dataDir: string, outPath: string): Promise<{ bytes: number }> {
  if (!hasEmbeddedDatabase(dataDir)) throw new Error(`no embedded database in ${dataDir}`);
  const handle = await openDb({ dataDir });
  if (handle.kind !== "pglite") throw new Error("unreachable: not PGlite");
  try {
    const dump = await handle.client.dumpDataDir("gzip");
    const bytes = Buffer.from(await dump.arrayBuffer());
    // Written beside its name (a new file: 0600 whatever a file already there allowed) and renamed
    // over it once whole, so an earlier backup of that name is never cut short.
    const part = `${outPath}.partial-${randomBytes(6).toString("hex")}`;
    try {
      writeFileSync(part, bytes, { mode: 0o600, flag: "wx" });
      renameSync(part, outPath);
    } finally {
      rmSync(part, { force: true });
    }
    return { bytes: bytes.length };
  } finally {
    await handle.close();
  }
}

export interface RestoreResult {
  /** Where the replaced files were moved, when there were any. */
  movedAside?: string | undefined;
}

/** `created_at` of the newest migration a database records, null when it records none. */
async function newestAppliedMigration(client: PGlite): Promise<number | null> {
  const { rows } = await client.query<{ ok: boolean }>(
    "select to_regclass('drizzle.__drizzle_migrations') is not null as ok",
  );
  if (!rows[0]?.ok) return null;
  const latest = await client.query<{ latest: string | null }>(
    "select max(created_at)::text as latest from drizzle.__drizzle_migrations",
  );
  const value = latest.rows[0]?.latest;
  return value == null ? null : Number(value);
}

/**
 * Loads a `backupEmbedded` tarball into `dataDir`. The tarball is PGlite's whole directory, dev
 * secrets included (the stored signing keys are encrypted with the KEK kept there), so it is
 * unpacked into a staging directory first: the lock file it carries (the backup's own) is
 * dropped there, and ours is never overwritten. Refuses to replace an existing database unless
 * `force`; then the replaced files go to `<dataDir>.replaced-<time>`, not deleted. The caller
 * holds the data directory's lock.
 */
export async function restoreEmbedded(
  dataDir: string,
  file: string,
  opts: { force?: boolean; now?: Date } = {},
): Promise<RestoreResult> {
  const tarball = readFileSync(file);
  if (hasEmbeddedDatabase(dataDir) && !opts.force) {
    throw new Error(
      `${dataDir} already holds a database: pass --force to replace it (its files are moved aside, not deleted)`,
    );
  }
  // Unpacked here, not by PGlite: its own gunzip of a file cut short rejects unhandled, a crash
  // with an empty reason. A gzip file checks its own length and CRC.
  let tar: Buffer = tarball;
  if (tarball[0] === 0x1f && tarball[1] === 0x8b) {
    try {
      tar = gunzipSync(tarball);
    } catch (err) {
      throw new Error(`${file} is not a usable backup (not a whole gzip file: ${(err as Error).message})`);
    }
  }
  // Nor is anything but a tar archive: PGlite takes a file it cannot untar for gzip and gunzips
  // it with a write it never awaits, whose rejection ends the process (an audit export or any
  // other file given by mistake). A backup is POSIX tar, "ustar" at offset 257 of its first header.
  if (tar.subarray(257, 262).toString("latin1") !== "ustar") {
    throw new Error(
      `${file} is not a usable backup (neither a gzip file nor a tar archive: pnpm db:backup writes a .tar.gz)`,
    );
  }
  // Staged and moved aside beside the directory itself, not beside a symlink naming it (rename
  // cannot cross filesystems). The caller's lock made the directory, so it exists.
  const dir = realpathSync(dataDir);
  const stagingPrefix = `.${basename(dir)}.restoring-`;
  // A restore killed mid-way left its staging folder (the backup's database and dev secrets): the
  // caller holds the directory's lock, so no other restore of it is running, and any is a leftover.
  for (const name of readdirSync(dirname(dir))) {
    if (name.startsWith(stagingPrefix) && /^\d+$/.test(name.slice(stagingPrefix.length))) {
      rmSync(join(dirname(dir), name), { recursive: true, force: true });
    }
  }
  const staging = join(dirname(dir), `${stagingPrefix}${process.pid}`);
  mkdirSync(staging, { mode: 0o700 });
  try {
    const client = new PGlite(staging, { loadDataDir: new Blob([tar], { type: "application/x-tar" }) });
    try {
      await client.waitReady;
      await client.query("select 1");
    } catch (err) {
      await client.close().catch(() => {});
      throw new Error(`${file} is not a usable backup (${causeText(err)})`);
    }
    // This checkout's code on a schema it does not know (a backup from a later version) is
    // refused before anything is replaced: `pnpm db:migrate` would apply nothing and say up to date.
    const newest = await newestAppliedMigration(client).finally(() => client.close());
    if (newest !== null && newest > latestMigrationMillis()) {
      throw new Error(
        `${file} was made by a newer Phaselock (its schema holds a migration of ${new Date(newest).toISOString()}, this checkout's newest is of ${new Date(latestMigrationMillis()).toISOString()}): update Phaselock, then restore it`,
      );
    }
    rmSync(join(staging, LOCK_FILE), { force: true });

    let movedAside: string | undefined;
    const current = readdirSync(dir).filter((name) => name !== LOCK_FILE);
    if (current.length > 0) {
      const stamp = (opts.now ?? new Date()).toISOString().replace(/[:.]/g, "-");
      movedAside = join(dirname(dir), `${basename(dir)}.replaced-${stamp}`);
      mkdirSync(movedAside, { mode: 0o700 });
      for (const name of current) renameSync(join(dir, name), join(movedAside, name));
    }
    for (const name of readdirSync(staging)) renameSync(join(staging, name), join(dir, name));
    securePrivateDir(dataDir);
    return { movedAside };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
