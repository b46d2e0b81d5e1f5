import { assertMigrated } from "@phaselock/db";
import { Redis } from "ioredis";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createMemoryDb,
  createTestDatabase,
  describeIntegration,
  integrationMode,
  pgAvailable,
  redisAvailable,
  services,
  TEST_DATABASE_URL,
  TEST_REDIS_URL,
  type TestDatabase,
  uniquePrefix,
} from "./index.ts";

describe("integrationMode", () => {
  const up = { postgres: true, redis: true };
  const pgDown = { postgres: false, redis: true };
  it.each([
    { needs: ["postgres", "redis"] as const, available: up, ci: true, mode: "run", missing: [] },
    { needs: ["postgres"] as const, available: pgDown, ci: false, mode: "skip", missing: ["postgres"] },
    {
      needs: ["postgres", "redis"] as const,
      available: pgDown,
      ci: true,
      mode: "fail",
      missing: ["postgres"],
    },
    { needs: ["redis"] as const, available: pgDown, ci: true, mode: "run", missing: [] },
    { needs: [] as const, available: { postgres: false, redis: false }, ci: true, mode: "run", missing: [] },
  ])("$needs with $available, CI=$ci -> $mode", ({ needs, available, ci, mode, missing }) => {
    expect(integrationMode(needs, available, ci)).toEqual({ mode, missing });
  });
});

describe("probes", () => {
  it("answer false quickly when nothing listens", async () => {
    const started = Date.now();
    expect(await pgAvailable("postgres://postgres@127.0.0.1:1/test")).toBe(false);
    expect(await redisAvailable("redis://127.0.0.1:1")).toBe(false);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("report both services", () => {
    expect(Object.keys(services).sort()).toEqual(["postgres", "redis"]);
  });
});

describe("uniquePrefix", () => {
  it("is unique and namespaced", () => {
    const a = uniquePrefix();
    expect(a).toMatch(/^pl:test:[0-9a-f]{12}:$/);
    expect(uniquePrefix()).not.toBe(a);
    expect(uniquePrefix("rate")).toMatch(/^pl:rate:/);
  });
});

// Vitest 4 inline projects do not inherit the root timeouts, and starting PGlite takes seconds.
const SLOW = 60_000;

describe("createMemoryDb", () => {
  it(
    "opens a migrated in-memory database",
    async () => {
      const handle = await createMemoryDb();
      try {
        expect(handle.kind).toBe("pglite");
        await assertMigrated(handle.db);
      } finally {
        await handle.close();
      }
    },
    SLOW,
  );
});

describeIntegration("createTestDatabase", ["postgres"], () => {
  let testDb: TestDatabase;
  const exists = async (name: string): Promise<boolean> => {
    const sqlClient = postgres(TEST_DATABASE_URL, { max: 1 });
    try {
      const rows = await sqlClient`select 1 from pg_database where datname = ${name}`;
      return rows.length === 1;
    } finally {
      await sqlClient.end();
    }
  };

  beforeAll(async () => {
    testDb = await createTestDatabase();
  }, SLOW);
  afterAll(async () => {
    await testDb?.drop();
  });

  it("creates a uniquely named, migrated database and drops it", async () => {
    expect(testDb.name).toMatch(/^pl_test_[0-9a-f]{16}$/);
    expect(testDb.url.endsWith(`/${testDb.name}`)).toBe(true);
    await assertMigrated(testDb.handle.db);

    // Even with a connection still open elsewhere, drop() removes it (WITH (FORCE)).
    const other = postgres(testDb.url, { max: 1 });
    expect(await other`select 1 as n`).toEqual([{ n: 1 }]);
    expect(await exists(testDb.name)).toBe(true);
    await testDb.drop();
    await testDb.drop();
    expect(await exists(testDb.name)).toBe(false);
    await other.end({ timeout: 0 });
  });
});

describeIntegration("TEST_REDIS_URL", ["redis"], () => {
  it("is reachable and prefixes keep test files apart", async () => {
    const redis = new Redis(TEST_REDIS_URL);
    const prefix = uniquePrefix();
    try {
      await redis.set(`${prefix}k`, "v", "EX", 60);
      expect(await redis.get(`${prefix}k`)).toBe("v");
      expect(await redis.get(`${uniquePrefix()}k`)).toBeNull();
    } finally {
      await redis.del(`${prefix}k`);
      await redis.quit();
    }
  });
});
