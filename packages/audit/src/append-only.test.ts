import { type Db, queryRows } from "@phaselock/db";
import { dbBackends, type TestDb } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, expect, it } from "vitest";
import { appendEvents, verifyStored } from "./store.ts";
import { sampleInput } from "./test-chain.ts";
import { asDatabaseOwner } from "./testing.ts";

const reasonOf = async (db: Db, seq: number) =>
  (await queryRows<{ reason: string }>(db, sql`select reason from audit_events where seq = ${seq}`))[0]
    ?.reason;

for (const backend of dbBackends) {
  describeIntegration(`audit_events is append-only (${backend.name})`, backend.needs, () => {
    let testDb: TestDb;
    let db: Db;

    beforeAll(async () => {
      testDb = await backend.open();
      db = testDb.handle.db;
      await appendEvents(
        db,
        Array.from({ length: 3 }, (_, i) => sampleInput(i)),
      );
    });
    afterAll(async () => {
      await testDb?.drop();
    });

    it.each([
      ["UPDATE", sql`update audit_events set reason = 'tampered' where seq = 2`],
      ["DELETE", sql`delete from audit_events where seq = 3`],
      ["TRUNCATE", sql`truncate audit_events`],
    ])("refuses an ordinary %s", async (op, statement) => {
      // drizzle wraps the database's error; the trigger's message is the cause.
      const err: unknown = await db.execute(statement).then(
        () => null,
        (e: unknown) => e,
      );
      expect((err as { cause?: Error } | null)?.cause?.message).toBe(
        `audit_events is append-only: ${op} refused`,
      );
      expect(await verifyStored(db)).toMatchObject({ ok: true, events: 3 });
    });

    it.each([
      ["UPDATE", sql`update audit_checkpoints set root_hash = 'forged' where tree_size = 3`],
      ["DELETE", sql`delete from audit_checkpoints where tree_size = 3`],
      ["TRUNCATE", sql`truncate audit_checkpoints`],
    ])("keeps stored checkpoints too: refuses an ordinary %s", async (op, statement) => {
      await db.execute(
        sql`insert into audit_checkpoints (tree_size, root_hash, note, frontier, created_at)
            values (3, 'root', 'note', '[]'::jsonb, now()) on conflict do nothing`,
      );
      const err: unknown = await db.execute(statement).then(
        () => null,
        (e: unknown) => e,
      );
      expect((err as { cause?: Error } | null)?.cause?.message).toBe(
        `audit_checkpoints is append-only: ${op} refused`,
      );
      const rows = await queryRows<{ root_hash: string }>(
        db,
        sql`select root_hash from audit_checkpoints where tree_size = 3`,
      );
      expect(rows).toEqual([{ root_hash: "root" }]);
    });

    it("still appends", async () => {
      await appendEvents(db, [sampleInput(3)]);
      expect(await verifyStored(db)).toMatchObject({ ok: true, events: 4 });
    });

    it("gives way to the database's owner, who switches the triggers off (what checkpoints are for)", async () => {
      await asDatabaseOwner(db, (tx) =>
        tx.execute(sql`update audit_events set reason = 'tampered' where seq = 2`),
      );
      expect(await reasonOf(db, 2)).toBe("tampered");
      expect(await verifyStored(db)).toMatchObject({
        ok: false,
        brokenAt: { seq: 2, reason: "hash_mismatch" },
      });
      // Only for that transaction: the next ordinary statement is refused again.
      await expect(db.execute(sql`delete from audit_events where seq = 2`)).rejects.toThrow();
    });
  });
}
