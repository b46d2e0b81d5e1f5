import { describeIntegration } from "@phaselock/testkit";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadRevocations } from "./repos/revocations.ts";
import { dbBackends, type TestDb } from "./testing.ts";

// A gateway loads every revocation at start-up, in pages: the pages must add up to exactly the
// rows, in (createdAt, id) order, however many share a time to the microsecond or the millisecond.
for (const backend of dbBackends) {
  describeIntegration(`loadRevocations in pages (${backend.name})`, backend.needs, () => {
    let t: TestDb;
    beforeAll(async () => {
      t = await backend.open();
      const db = t.handle.db;
      // Five rows at one microsecond-precise time (what now() writes), three more in the same
      // millisecond a few microseconds later, two at an ms-precise time, one link per row.
      await db.execute(sql`
        insert into revocations (id, scope, link_id, reason, actor, effective_at, created_at)
        select 'rev_' || lpad(g::text, 2, '0'), 'link', 'lnk_' || g, 'lost phone', 'admin', now(),
          case when g <= 5 then '2026-11-01 10:00:00.123456+00'::timestamptz
               when g <= 8 then '2026-11-01 10:00:00.123789+00'::timestamptz
               else '2026-11-01 10:00:01.5+00'::timestamptz end
        from generate_series(1, 10) as g`);
    });
    afterAll(async () => {
      await t?.drop();
    });

    it.each([1, 2, 3, 4, 5, 9, 10, 11, 5000])(
      "pages of %i rows give every row once, in order",
      async (pageRows) => {
        const all = await loadRevocations(t.handle.db, pageRows);
        expect(all.map((r) => r.id)).toEqual(
          Array.from({ length: 10 }, (_, i) => `rev_${String(i + 1).padStart(2, "0")}`),
        );
      },
    );
  });
}
