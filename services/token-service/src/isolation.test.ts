import { treeSize } from "@phaselock/audit";
import { createDb, type DbHandle } from "@phaselock/db";
import { createTestDatabase, type TestDatabase } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { issueLinks } from "./issuance.ts";
import { ADMIN_PRINCIPAL, createHarness, type Harness, openPhaseRequest, seedOpen } from "./test-support.ts";

// An operator may set `default_transaction_isolation`; the audit append needs READ COMMITTED.
describeIntegration(
  "audited changes on a session whose default isolation is REPEATABLE READ",
  ["postgres"],
  () => {
    let db: TestDatabase;
    let strict: DbHandle;
    let h: Harness;
    beforeAll(async () => {
      db = await createTestDatabase();
      const url = new URL(db.url);
      url.searchParams.set("default_transaction_isolation", "repeatable read");
      strict = createDb({ databaseUrl: url.toString(), poolSize: 2 });
      h = await createHarness({ handle: strict });
    }, 60_000);
    afterAll(async () => {
      await h?.close();
      await db?.drop();
    });

    it("issue links and record their events, at READ COMMITTED whatever the default", async () => {
      const { campaignId } = await seedOpen(h);
      const before = await treeSize(strict.db);
      const links = await issueLinks(
        h.deps,
        { principal: ADMIN_PRINCIPAL, requestId: "r" },
        openPhaseRequest(campaignId, ["a", "b"]),
      );
      expect(links).toHaveLength(2);
      expect(await treeSize(strict.db)).toBe(before + 3);
    });
  },
);
