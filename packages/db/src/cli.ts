/**
 * `pnpm db:migrate`, `pnpm db:backup`, `pnpm db:restore`. On the embedded database each takes
 * the data directory's lock first: while a service holds it they refuse, naming it, rather than
 * open PGlite files another process is writing (which is how the directory gets corrupted).
 */
import { resolve } from "node:path";
import type { Writable } from "node:stream";
import { parseArgs } from "node:util";
import { acquireDataDirLock, type DataDirLock, DataDirLockedError, databaseUrlOf } from "@phaselock/core";
import { createDb } from "./client.ts";
import { backupEmbedded, hasEmbeddedDatabase, openDb, restoreEmbedded } from "./embedded.ts";
import { grantServicesRole, servicesGrantsSql } from "./grants.ts";
import { assertMigrated, migrate } from "./migrate.ts";

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

const MIGRATE_USAGE = "usage: pnpm db:migrate [--grant ROLE | --check [--wait SECONDS]]\n";

/**
 * `pnpm db:migrate`: applies the committed migrations. `--check` applies nothing: 0 when the
 * database is migrated, 1 when not (what a service's start-up check would refuse), so a role that
 * owns nothing can ask it; with `--wait SECONDS` it asks again every 2 s (a database not yet
 * reachable, or not yet migrated, is asked again) until migrated or the time is up: a gateway's
 * init container waiting for the token service's migration. `--grant ROLE` (Postgres only, run as
 * the tables' owner) then gives the services' role, which must exist, its privileges on every
 * table there now is (the README's "Database roles" block): a table a migration adds is granted
 * as it is made, not when someone remembers. 2 for a usage error.
 */
export async function runMigrateCli(
  env: NodeJS.ProcessEnv,
  io: CliIo,
  argv: readonly string[] = [],
  opts: { pause?: (ms: number) => Promise<void>; now?: () => number } = {},
): Promise<number> {
  let values: { check?: boolean | undefined; wait?: string | undefined; grant?: string | undefined };
  try {
    ({ values } = parseArgs({
      args: argv.filter((a) => a !== "--"),
      options: { check: { type: "boolean" }, wait: { type: "string" }, grant: { type: "string" } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    io.stderr.write(`${message(err)}\n${MIGRATE_USAGE}`);
    return 2;
  }
  const waitS = values.wait === undefined ? 0 : Number(values.wait);
  if (!Number.isInteger(waitS) || waitS < 0 || waitS > 3600 || (values.wait !== undefined && !values.check)) {
    io.stderr.write(`--wait: whole seconds (0 to 3600), with --check\n${MIGRATE_USAGE}`);
    return 2;
  }
  const grant = values.grant;
  if (grant !== undefined) {
    try {
      if (values.check) throw new Error("--grant changes privileges, --check changes nothing: not both");
      servicesGrantsSql(grant);
    } catch (err) {
      io.stderr.write(`--grant: ${message(err)}\n${MIGRATE_USAGE}`);
      return 2;
    }
  }
  let databaseUrl: string | undefined;
  try {
    databaseUrl = databaseUrlOf(env);
  } catch (err) {
    io.stderr.write(`db:migrate: ${message(err)}\n`);
    return 2;
  }
  if (grant !== undefined && !databaseUrl) {
    io.stderr.write(
      "db:migrate --grant: roles are a Postgres server's; set DATABASE_URL (the embedded database has none)\n",
    );
    return 2;
  }
  const dataDir = databaseUrl ? undefined : dataDirOf(env);
  const target = databaseUrl ? `postgres ${redact(databaseUrl)}` : `embedded PGlite in ${dataDir}`;
  const command = values.check ? "db:migrate --check" : "db:migrate";
  const open = async () => (databaseUrl ? createDb({ databaseUrl }) : await openDb({ dataDir }));
  const run = async () => {
    // A check makes nothing: no embedded database where there is none.
    if (values.check && dataDir !== undefined && !hasEmbeddedDatabase(dataDir)) {
      throw new Error(`no embedded database in ${dataDir}`);
    }
    const handle = await open();
    try {
      if (values.check) {
        await assertMigrated(handle.db);
        io.stdout.write(`${command}: ${target} is migrated\n`);
        return;
      }
      const { applied, total } = await migrate(handle);
      io.stdout.write(
        applied === 0
          ? `db:migrate: ${target} is up to date (${total} migrations)\n`
          : `db:migrate: applied ${applied} migration(s) to ${target} (${total} in total)\n`,
      );
      if (grant !== undefined) {
        await grantServicesRole(handle.db, grant).catch((err: unknown) => {
          // drizzle wraps Postgres' error in one that quotes the whole block: say Postgres' own.
          const cause = (err as { cause?: { code?: unknown } }).cause ?? err;
          const hint =
            (cause as { code?: unknown }).code === UNDEFINED_OBJECT
              ? ' (make the role first: README, "Database roles")'
              : "";
          throw new Error(`--grant ${grant}: ${message(cause)}${hint}`);
        });
        io.stdout.write(`db:migrate: granted ${grant} the services' privileges on every table\n`);
      }
    } finally {
      await handle.close();
    }
  };
  const pause = opts.pause ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const now = opts.now ?? Date.now;
  const until = now() + waitS * 1000;
  for (;;) {
    try {
      if (dataDir === undefined) await run();
      else await withLock(dataDir, `pnpm ${command}`, run);
      return 0;
    } catch (err) {
      if (waitS > 0 && !(err instanceof DataDirLockedError) && now() < until) {
        await pause(WAIT_STEP_MS);
        continue;
      }
      const text =
        err instanceof DataDirLockedError
          ? lockedHint(err, "The running service migrated it when it started; stop it to run db:migrate.")
          : message(err);
      io.stderr.write(`${command} failed: ${text}${waitS > 0 ? ` (still, after ${waitS} s)` : ""}\n`);
      return 1;
    }
  }
}

/** Postgres' SQLSTATE for a role (or other object) that does not exist. */
const UNDEFINED_OBJECT = "42704";

/** How often `--check --wait` asks again. */
const WAIT_STEP_MS = 2_000;

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
