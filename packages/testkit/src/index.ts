/**
 * Test helpers: service URLs and availability, integration suites that fail in CI and skip
 * locally when a service is down, and a fresh database per test file. Nothing here is shared
 * between test files: every database and key prefix is unique.
 */
import { randomBytes } from "node:crypto";
import { createDb, type DbHandle, migrate, type PgliteHandle, type PostgresHandle } from "@phaselock/db";
import postgres from "postgres";
import { beforeAll, describe } from "vitest";
import { pgAvailable as probePg, redisAvailable as probeRedis } from "./probe.ts";

export const TEST_DATABASE_URL: string =
  process.env.TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test";
export const TEST_REDIS_URL: string = process.env.TEST_REDIS_URL || "redis://127.0.0.1:6379";

/** True when `select 1` answers on `url` within two seconds. */
export const pgAvailable = (url: string = TEST_DATABASE_URL): Promise<boolean> => probePg(url);
/** True when `PING` answers on `url` within two seconds. */
export const redisAvailable = (url: string = TEST_REDIS_URL): Promise<boolean> => probeRedis(url);

export type Service = "postgres" | "redis";
export type Services = Record<Service, boolean>;

/** Probes Postgres and Redis at the test URLs, in parallel. */
export async function probeServices(): Promise<Services> {
  const [pg, redis] = await Promise.all([pgAvailable(), redisAvailable()]);
  return { postgres: pg, redis };
}

/** What was reachable when this test file loaded testkit. */
export const services: Services = await probeServices();

const describeService = (s: Service): string =>
  s === "postgres" ? `Postgres (${redactUrl(TEST_DATABASE_URL)})` : `Redis (${redactUrl(TEST_REDIS_URL)})`;

/** What an integration suite does: run, skip (locally, a service is down) or fail (in CI). */
export function integrationMode(
  needs: readonly Service[],
  available: Services,
  ci: boolean,
): { mode: "run" | "skip" | "fail"; missing: Service[] } {
  const missing = needs.filter((s) => !available[s]);
  if (missing.length === 0) return { mode: "run", missing };
  return { mode: ci ? "fail" : "skip", missing };
}

/**
 * A `describe` that needs real services. When one is unreachable it is skipped locally, with a
 * warning, and FAILS in CI (`CI=true`): integration suites must never silently skip there.
 */
export function describeIntegration(name: string, needs: readonly Service[], fn: () => void): void {
  const { mode, missing } = integrationMode(needs, services, process.env.CI === "true");
  const what = missing.map(describeService).join(" and ");
  if (mode === "skip")
    console.warn(`[testkit] skipping "${name}": ${what} not reachable (with CI=true this fails)`);
  describe.skipIf(mode === "skip")(name, () => {
    if (mode === "fail") {
      beforeAll(() => {
        throw new Error(
          `"${name}" needs ${what}, which is not reachable; CI=true requires every integration suite to run`,
        );
      });
    }
    fn();
  });
}

function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable url)";
  }
}

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
  const dropDatabase = () => withAdmin((sql) => sql.unsafe(`drop database if exists "${name}" with (force)`));
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

/** A unique Redis key prefix, e.g. `pl:test:3f9a…:`, so test files never see each other's keys. */
export const uniquePrefix = (label = "test"): string => `pl:${label}:${randomBytes(6).toString("hex")}:`;
