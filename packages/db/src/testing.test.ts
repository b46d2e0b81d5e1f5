import { describeIntegration, TEST_DATABASE_URL } from "@phaselock/testkit";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDb } from "./client.ts";
import { assertMigrated, DatabaseUnreachableError } from "./migrate.ts";
import { createMemoryDb, createTestDatabase, type TestDatabase } from "./testing.ts";

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

describe("assertMigrated on a database it cannot reach", () => {
  it("says so in the driver's words, not which query failed", async () => {
    const handle = createDb({ databaseUrl: "postgres://postgres:pw-not-shown@127.0.0.1:1/phaselock" });
    try {
      const err = await assertMigrated(handle.db).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(DatabaseUnreachableError);
      expect((err as Error).message).toMatch(
        /^cannot reach the database: connect ECONNREFUSED 127\.0\.0\.1:1$/,
      );
    } finally {
      await handle.close();
    }
  });
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
