import { createTestDatabase, type TestDatabase } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { callJson, createHarness, type Harness } from "./test-support.ts";

// The contract: while its database is unreachable the token service answers 503, never 500.
describeIntegration("a token service whose database is dropped under it", ["postgres"], () => {
  let db: TestDatabase;
  let h: Harness;
  beforeAll(async () => {
    db = await createTestDatabase({ poolSize: 2 });
    h = await createHarness({ handle: db.handle });
  }, 60_000);
  afterAll(async () => {
    await h?.close();
    await db?.drop();
  });

  it("answers 503 unavailable, not 500 internal, once the database is gone", async () => {
    expect((await callJson(h, "GET", "/v1/contests")).status).toBe(200);
    await db.dropUnder();
    // The pool's connections were ended; every new one is refused 3D000 (database does not exist).
    for (let i = 0; i < 3; i++) {
      const { status, body } = await callJson(h, "GET", "/v1/contests");
      expect({ status, code: body.code }).toEqual({ status: 503, code: "unavailable" });
    }
  });
});
