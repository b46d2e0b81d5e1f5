/**
 * Databases for tests: a fresh, migrated database per test file (PGlite in memory, or a uniquely
 * named Postgres database next to TEST_DATABASE_URL), and both backends for running one suite
 * against each. Used only by tests.
 */
import { randomBytes } from "node:crypto";
import { type Service, TEST_DATABASE_URL } from "@phaselock/testkit";
import postgres from "postgres";
import { createDb, type DbHandle, type PgliteHandle, type PostgresHandle } from "./client.ts";
import { migrate } from "./migrate.ts";

/** A test database: `drop()` closes the handle and removes the database (idempotent). */
export interface TestDb {
  handle: DbHandle;
  /** Set for Postgres. */
  url?: string;
  drop(): Promise<void>;
}

export interface TestDatabase extends TestDb {
  name: string;
  url: string;
  handle: PostgresHandle;
  /**
   * Drops the database under its open handle (`WITH (FORCE)`: its connections are ended), as an
   * operator removing it under a running service would. `drop()` still closes the handle.
   */
  dropUnder(): Promise<void>;
  /** Resolves once `n` of its connections are running a statement (polls pg_stat_activity). */
  waitForActive(n: number): Promise<void>;
}

async function withAdmin<T>(fn: (sql: postgres.Sql) => Promise<T>): Promise<T> {
  const sql = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {} });
  try {
    return await fn(sql);
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/**
 * Creates a fresh, uniquely named Postgres database (`pl_test_<random>`) next to
 * TEST_DATABASE_URL, migrates it (unless `migrate: false`) and opens it. Call `drop()` in `afterAll`.
 */
export async function createTestDatabase(
  opts: { poolSize?: number; migrate?: boolean } = {},
): Promise<TestDatabase> {
  const name = `pl_test_${randomBytes(8).toString("hex")}`;
  await withAdmin((sql) => sql.unsafe(`create database "${name}"`));
  const dropDatabase = async (): Promise<void> => {
    await withAdmin((sql) => sql.unsafe(`drop database if exists "${name}" with (force)`));
  };
  const u = new URL(TEST_DATABASE_URL);
  u.pathname = `/${name}`;
  const url = u.toString();
  const handle = createDb({ databaseUrl: url, poolSize: opts.poolSize ?? 5 });
  if (handle.kind !== "postgres") throw new Error("unreachable: a URL opens postgres.js");
  try {
    if (opts.migrate !== false) await migrate(handle);
  } catch (err) {
    await handle.close();
    await dropDatabase();
    throw err;
  }
  let dropped: Promise<void> | undefined;
  return {
    name,
    url,
    handle,
    dropUnder: dropDatabase,
    waitForActive: (n) =>
      withAdmin(async (sql) => {
        for (;;) {
          const [row] = await sql<{ n: number }[]>`select count(*)::int as n from pg_stat_activity
            where datname = ${name} and state = 'active' and pid <> pg_backend_pid()`;
          if ((row?.n ?? 0) >= n) return;
          await sql`select pg_sleep(0.01)`;
        }
      }),
    drop: () => {
      dropped ??= handle.close().then(async () => {
        await dropDatabase();
      });
      return dropped;
    },
  };
}

/** A migrated (unless `migrate: false`) in-memory PGlite database. Close it with `handle.close()`. */
export async function createMemoryDb(opts: { migrate?: boolean } = {}): Promise<PgliteHandle> {
  const handle = createDb({ memory: true });
  if (handle.kind !== "pglite") throw new Error("unreachable: memory opens PGlite");
  if (opts.migrate !== false) await migrate(handle);
  return handle;
}

export interface DbBackend {
  name: "pglite" | "postgres";
  needs: Service[];
  /** A fresh database of this kind, migrated unless `migrate: false`. */
  open(opts?: { migrate?: boolean }): Promise<TestDb>;
}

/**
 * Both drivers, for running one suite against each:
 * `for (const b of dbBackends) describeIntegration(`x (${b.name})`, b.needs, () => …)`.
 */
export const dbBackends: readonly DbBackend[] = [
  {
    name: "pglite",
    needs: [],
    open: async (opts) => {
      const handle = await createMemoryDb(opts);
      return { handle, drop: () => handle.close() };
    },
  },
  { name: "postgres", needs: ["postgres"], open: (opts) => createTestDatabase(opts) },
];
