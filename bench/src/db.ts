import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createDb, type DbHandle, migrate } from "@phaselock/db";
import { pgAvailable, redisAvailable } from "@phaselock/testkit/probe";
import { Redis } from "ioredis";
import postgres from "postgres";

/** True when `select 1` answers within two seconds. */
export const postgresReachable = pgAvailable;
/** True when `PING` answers within two seconds. */
export const redisReachable = redisAvailable;

/** A migrated database of its own for one benchmark; `drop()` removes it (idempotent). */
export interface ScratchDb {
  kind: "postgres" | "pglite";
  /** `postgres://…/pl_bench_…` for Postgres */
  url?: string;
  /** the PGlite directory */
  dataDir?: string;
  handle: DbHandle;
  /** where it lives, for the report */
  describe: string;
  /** Closes the handle (a PGlite directory can then be opened by another process). */
  close(): Promise<void>;
  drop(): Promise<void>;
}

const open = new Set<ScratchDb>();

/** Drops every scratch database not yet dropped; for the runner's `finally`. */
export async function dropAll(): Promise<void> {
  for (const db of [...open]) await db.drop().catch(() => {});
}

/**
 * A fresh database: `pl_bench_<label>_<random>` next to `adminUrl` when given (Postgres), else an
 * embedded PGlite in a temporary directory.
 */
export async function createScratchDb(label: string, adminUrl: string | undefined): Promise<ScratchDb> {
  if (adminUrl) {
    const name = `pl_bench_${label}_${randomBytes(5).toString("hex")}`;
    const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
    try {
      await admin.unsafe(`create database "${name}"`);
    } finally {
      await admin.end({ timeout: 5 });
    }
    const u = new URL(adminUrl);
    u.pathname = `/${name}`;
    const url = u.toString();
    const handle = createDb({ databaseUrl: url, poolSize: 10 });
    let dropped: Promise<void> | undefined;
    const db: ScratchDb = {
      kind: "postgres",
      url,
      handle,
      describe: `Postgres database ${name}`,
      close: () => handle.close(),
      drop: () => {
        dropped ??= (async () => {
          open.delete(db);
          await handle.close().catch(() => {});
          const a = postgres(adminUrl, { max: 1, onnotice: () => {} });
          try {
            await a.unsafe(`drop database if exists "${name}" with (force)`);
          } finally {
            await a.end({ timeout: 5 });
          }
        })();
        return dropped;
      },
    };
    open.add(db);
    await migrate(handle);
    return db;
  }
  const dataDir = await mkdtemp(join(tmpdir(), `pl-bench-${label}-`));
  const handle = createDb({ dataDir });
  let dropped: Promise<void> | undefined;
  const db: ScratchDb = {
    kind: "pglite",
    dataDir,
    handle,
    describe: `embedded PGlite in ${dataDir}`,
    close: () => handle.close(),
    drop: () => {
      dropped ??= (async () => {
        open.delete(db);
        await handle.close().catch(() => {});
        await rm(dataDir, { recursive: true, force: true });
      })();
      return dropped;
    },
  };
  open.add(db);
  await migrate(handle);
  return db;
}

/** Deletes every key under a bench run's own Redis prefix. */
export async function dropRedisPrefix(url: string, prefix: string): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
      cursor = next;
      if (keys.length > 0) await redis.del(...keys);
    } while (cursor !== "0");
  } finally {
    redis.disconnect();
  }
}
