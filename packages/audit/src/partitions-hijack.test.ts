/**
 * An attacker's review of the partition maintenance (issue 12, item 6): `audit_events_ensure_partitions()`
 * is SECURITY DEFINER and callable by the services' role, so nothing the caller's session can
 * create may steer it. Every role may create temporary tables, and a temporary table is found by
 * an unqualified name (`pg_temp` is on the function's search_path): a temp table named like next
 * month's partition must not stop that partition being made (its events would pile up in the
 * default partition, which then can neither be split by month nor retired).
 */
import { type Db, queryRows } from "@phaselock/db";
import { dbBackends, type TestDb } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, expect, it } from "vitest";

const monthName = (monthsAhead: number): string => {
  const now = new Date();
  const d = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + monthsAhead, 1));
  return `audit_events_${d.getUTCFullYear()}_${String(d.getUTCMonth() + 1).padStart(2, "0")}`;
};

for (const backend of dbBackends) {
  describeIntegration(`audit partition maintenance under attack (${backend.name})`, backend.needs, () => {
    let testDb: TestDb;
    let db: Db;

    beforeAll(async () => {
      testDb = await backend.open();
      db = testDb.handle.db;
    });
    afterAll(async () => {
      await testDb?.drop();
    });

    it("a caller's temporary table named like a month does not stop that month's partition", async () => {
      const name = monthName(9);
      const made = await db.transaction(async (tx) => {
        await tx.execute(sql.raw(`create temporary table ${name} (x int) on commit drop`));
        const [row] = await queryRows<{ made: number }>(
          tx,
          sql`select audit_events_ensure_partitions(10) as made`,
        );
        return row?.made;
      });
      expect(made).toBeGreaterThan(0);
      const [part] = await queryRows<{ parent: string | null }>(
        db,
        sql`select i.inhparent::regclass::text as parent from pg_class c
              join pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'
              left join pg_inherits i on i.inhrelid = c.oid
             where c.relname = ${name}`,
      );
      expect(part?.parent).toBe("audit_events");
      // And it is append-only like every partition (its own TRUNCATE trigger).
      await expect(db.execute(sql.raw(`truncate public.${name}`))).rejects.toThrow();
    });

    it("a table of a partition's name that is not a partition of audit_events is an error, not a skip", async () => {
      const name = monthName(12);
      const err = await db
        .transaction(async (tx) => {
          // As the owner (only an owner can create in public): a stray table where a partition should be.
          await tx.execute(sql.raw(`create table public.${name} (x int)`));
          await tx.execute(sql`select audit_events_ensure_partitions(12)`);
        })
        .then(
          () => undefined,
          (e: unknown) => e as Error & { cause?: Error },
        );
      expect(err?.cause?.message ?? err?.message).toMatch(/not a partition of audit_events/);
    });
  });
}
