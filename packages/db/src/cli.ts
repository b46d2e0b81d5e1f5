/**
 * `pnpm db:migrate`, `pnpm db:backup`, `pnpm db:restore`. On the embedded database each takes
 * the data directory's lock first: while a service holds it they refuse, naming it, rather than
 * open PGlite files another process is writing (which is how the directory gets corrupted).
 */
import { resolve } from "node:path";
import type { Writable } from "node:stream";
import { parseArgs } from "node:util";
import { acquireDataDirLock, type DataDirLock, DataDirLockedError } from "@phaselock/core";
import { createDb } from "./client.ts";
import { backupEmbedded, openDb, restoreEmbedded } from "./embedded.ts";
import { migrate } from "./migrate.ts";

export interface CliIo {
  stdout: Writable;
  stderr: Writable;
}

/** The URL without its password, for printing. */
const redact = (url: string): string => {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable DATABASE_URL)";
  }
};

/** `pnpm --filter` runs scripts in the package directory; INIT_CWD is where the user ran pnpm. */
const userPath = (path: string, env: NodeJS.ProcessEnv): string =>
  resolve(env.INIT_CWD || process.cwd(), path);

const dataDirOf = (env: NodeJS.ProcessEnv): string => userPath(env.DATA_DIR || "./.data", env);

const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * Runs `fn` holding the data directory's lock, released on return, on exit and on Ctrl-C (a
 * CLI killed mid-way leaves a stale lock, which the next process takes over anyway).
 */
async function withLock<T>(dataDir: string, command: string, fn: () => Promise<T>): Promise<T> {
  const lock: DataDirLock = acquireDataDirLock(dataDir, { command });
  const onSignal = () => {
    lock.release();
    process.exit(130);
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    return await fn();
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    lock.release();
  }
}

const lockedHint = (err: DataDirLockedError, what: string): string => `${err.message}\n${what}`;

export async function runMigrateCli(env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  const databaseUrl = env.DATABASE_URL || undefined;
  const dataDir = databaseUrl ? undefined : dataDirOf(env);
  const target = databaseUrl ? `postgres ${redact(databaseUrl)}` : `embedded PGlite in ${dataDir}`;
  const run = async () => {
    const handle = databaseUrl ? createDb({ databaseUrl }) : await openDb({ dataDir });
    try {
      const { applied, total } = await migrate(handle);
      io.stdout.write(
        applied === 0
          ? `db:migrate: ${target} is up to date (${total} migrations)\n`
          : `db:migrate: applied ${applied} migration(s) to ${target} (${total} in total)\n`,
      );
    } finally {
      await handle.close();
    }
  };
  try {
    if (dataDir === undefined) await run();
    else await withLock(dataDir, "pnpm db:migrate", run);
    return 0;
  } catch (err) {
    const text =
      err instanceof DataDirLockedError
        ? lockedHint(err, "The running service migrated it when it started; stop it to run db:migrate.")
        : message(err);
    io.stderr.write(`db:migrate failed: ${text}\n`);
    return 1;
  }
}

const BACKUP_USAGE = "usage: pnpm db:backup [--out FILE.tar.gz]\n";

export async function runBackupCli(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  io: CliIo,
  now: () => Date = () => new Date(),
): Promise<number> {
  let out: string | undefined;
  try {
    ({
      values: { out },
    } = parseArgs({
      args: argv.filter((a) => a !== "--"),
      options: { out: { type: "string", short: "o" } },
      strict: true,
    }));
  } catch (err) {
    io.stderr.write(`${message(err)}\n${BACKUP_USAGE}`);
    return 2;
  }
  if (env.DATABASE_URL) {
    io.stderr.write("db:backup: DATABASE_URL is set; back up a real Postgres with pg_dump\n");
    return 2;
  }
  const dataDir = dataDirOf(env);
  const stamp = now().toISOString().replace(/[:.]/g, "-");
  const outPath = userPath(out ?? `phaselock-backup-${stamp}.tar.gz`, env);
  try {
    const { bytes } = await withLock(dataDir, "pnpm db:backup", () => backupEmbedded(dataDir, outPath));
    io.stdout.write(`db:backup: wrote ${outPath} (${bytes} bytes) from ${dataDir}\n`);
    return 0;
  } catch (err) {
    const text =
      err instanceof DataDirLockedError
        ? lockedHint(err, "Stop it first: a backup needs the database to itself.")
        : message(err);
    io.stderr.write(`db:backup failed: ${text}\n`);
    return 1;
  }
}

const RESTORE_USAGE = "usage: pnpm db:restore FILE.tar.gz [--force]\n";

export async function runRestoreCli(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  io: CliIo,
): Promise<number> {
  let force: boolean | undefined;
  let positionals: string[];
  try {
    ({
      values: { force },
      positionals,
    } = parseArgs({
      args: argv.filter((a) => a !== "--"),
      options: { force: { type: "boolean" } },
      strict: true,
      allowPositionals: true,
    }));
  } catch (err) {
    io.stderr.write(`${message(err)}\n${RESTORE_USAGE}`);
    return 2;
  }
  const [file] = positionals;
  if (file === undefined || positionals.length > 1) {
    io.stderr.write(RESTORE_USAGE);
    return 2;
  }
  if (env.DATABASE_URL) {
    io.stderr.write("db:restore: DATABASE_URL is set; restore a real Postgres with pg_restore\n");
    return 2;
  }
  const dataDir = dataDirOf(env);
  const from = userPath(file, env);
  try {
    const { movedAside } = await withLock(dataDir, "pnpm db:restore", () =>
      restoreEmbedded(dataDir, from, { force: force === true }),
    );
    io.stdout.write(
      `db:restore: restored ${from} into ${dataDir}${movedAside ? `; the replaced files are in ${movedAside}` : ""}\n`,
    );
    return 0;
  } catch (err) {
    const text =
      err instanceof DataDirLockedError
        ? lockedHint(err, "Stop it first: a restore replaces its files.")
        : message(err);
    io.stderr.write(`db:restore failed: ${text}\n`);
    return 1;
  }
}
