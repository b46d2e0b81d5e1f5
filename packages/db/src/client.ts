import { mkdirSync, realpathSync } from "node:fs";
import { PGlite } from "@electric-sql/pglite";
import { DataDirLockedError, liveLockHolder, securePrivateDir } from "@phaselock/core";
import type { ExtractTablesWithRelations } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT, PgTransaction } from "drizzle-orm/pg-core";
import { drizzle as drizzlePglite } from "drizzle-orm/pglite";
import { drizzle as drizzlePostgres } from "drizzle-orm/postgres-js";
import postgres from "postgres";
import * as schema from "./schema/index.ts";
import { createStallWatch, type StallWatchOptions, singleTcpHost } from "./stall-watch.ts";

export type Schema = typeof schema;

/**
 * The drizzle database both drivers satisfy (postgres.js and PGlite), so repositories are written
 * once. Raw `execute()` results differ between the drivers: use the query builder, or `queryRows`.
 */
export type Db = PgDatabase<PgQueryResultHKT, Schema>;

/** A transaction handle, as passed to `db.transaction(fn)`. Also a `Db`. */
export type Tx = PgTransaction<PgQueryResultHKT, Schema, ExtractTablesWithRelations<Schema>>;

export interface CreateDbOptions {
  /** `postgres://…`: a real Postgres through postgres.js. */
  databaseUrl?: string | undefined;
  /** Directory of an embedded PGlite database (created if missing). */
  dataDir?: string | undefined;
  /** An in-memory PGlite database, gone on close. */
  memory?: boolean | undefined;
  /** Pool size for postgres.js (default 10). */
  poolSize?: number | undefined;
  /**
   * How a Postgres that stops answering is noticed (stall-watch.ts); `false`: not watched. Only a
   * URL with one TCP host and no TLS is watched (a socket path, several hosts or TLS are left to TCP).
   */
  stallWatch?: StallWatchOptions | false | undefined;
}

interface HandleBase {
  db: Db;
  /** Ends the pool or closes PGlite. Safe to call twice. */
  close(): Promise<void>;
}

export interface PostgresHandle extends HandleBase {
  kind: "postgres";
  /** The connection URL, used by `migrate()` to open its own connection. */
  url: string;
}

export interface PgliteHandle extends HandleBase {
  kind: "pglite";
  client: PGlite;
}

export type DbHandle = PostgresHandle | PgliteHandle;

/**
 * Opens a database: postgres.js for `databaseUrl`, else PGlite in `dataDir`, else (with
 * `memory: true`) an in-memory PGlite. Does not migrate: call `migrate()` or `assertMigrated()`.
 */
export function createDb(opts: CreateDbOptions): DbHandle {
  if (opts.databaseUrl) {
    const target = opts.stallWatch === false ? null : singleTcpHost(opts.databaseUrl);
    const watch = target ? createStallWatch(target, opts.stallWatch || {}) : undefined;
    const client = postgres(opts.databaseUrl, {
      max: opts.poolSize ?? 10,
      // An unreachable database answers 503 within seconds rather than holding requests for 30 s.
      connect_timeout: 5,
      // Queries wait for the next reconnection attempt: keep it near, so that during an outage
      // every request fails (503) within a second instead of after a backoff of up to 20 s.
      backoff: (attempt: number) => Math.min(0.05 * 2 ** attempt, 0.5),
      // Idempotent DDL and migrations emit NOTICEs that would otherwise go to the console.
      onnotice: () => {},
      // No JIT: the link-status filters' correlated lookups give plans an estimated cost far past
      // `jit_above_cost` at a million links, and compiling them took 0.5–0.7 s of a 0.2 s query
      // (docs/benchmarks.md). Nothing this service runs is long enough to win it back.
      connection: { jit: "off" },
      ...(watch ? { socket: watch.socket } : {}),
    });
    watch?.start(opts.databaseUrl);
    const db: Db = drizzlePostgres({ client, schema });
    let closed: Promise<void> | undefined;
    return {
      kind: "postgres",
      db,
      url: opts.databaseUrl,
      close: () => {
        closed ??= Promise.all([client.end({ timeout: 5 }), watch?.close()]).then(() => {});
        return closed;
      },
    };
  }
  if (opts.dataDir === undefined && opts.memory !== true) {
    throw new Error("createDb needs databaseUrl, dataDir or memory: true");
  }
  const dataDir = opts.dataDir;
  if (dataDir !== undefined) {
    // Two PGlite instances on one directory corrupt it: whoever holds the lock owns it.
    const holder = liveLockHolder(dataDir);
    if (holder && holder.pid !== process.pid) throw new DataDirLockedError(dataDir, holder);
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  }
  // PGlite cannot mount a symlink (its file system answers ENOENT): open the directory it names.
  const client = dataDir === undefined ? new PGlite() : new PGlite(realpathSync(dataDir));
  const db: Db = drizzlePglite({ client, schema });
  let closed: Promise<void> | undefined;
  return {
    kind: "pglite",
    db,
    client,
    close: () => {
      closed ??= (client.closed ? Promise.resolve() : client.close()).then(() => {
        // PGlite writes its files 0666 whatever the umask.
        if (dataDir !== undefined) securePrivateDir(dataDir);
      });
      return closed;
    },
  };
}
