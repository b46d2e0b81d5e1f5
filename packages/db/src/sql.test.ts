import { describeIntegration } from "@phaselock/testkit";
import { type SQL, sql } from "drizzle-orm";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Db } from "./client.ts";
import { executePipelined, queryRows } from "./sql.ts";
import { dbBackends, type TestDb } from "./testing.ts";

const SLOW = 60_000;

for (const backend of dbBackends) {
  describeIntegration(`executePipelined (${backend.name})`, backend.needs, () => {
    let testDb: TestDb;
    let db: Db;

    beforeAll(async () => {
      testDb = await backend.open({ migrate: false });
      db = testDb.handle.db;
      await db.execute(sql`create table pipelined (n int primary key, at bigserial)`);
    }, SLOW);
    afterAll(async () => {
      await testDb?.drop();
    }, SLOW);

    const stored = async (): Promise<number[]> =>
      (await queryRows<{ n: number }>(db, sql`select n from pipelined order by at`)).map((r) => Number(r.n));

    it("runs every statement, in order, and counts them", async () => {
      await db.execute(sql`truncate pipelined`);
      function* inserts(): Generator<SQL> {
        for (let n = 1; n <= 5; n++) yield sql`insert into pipelined (n) values (${n})`;
      }
      expect(await executePipelined(db, inserts())).toBe(5);
      expect(await stored()).toEqual([1, 2, 3, 4, 5]);
      expect(await executePipelined(db, [])).toBe(0);
    });

    it("rejects with the first failure and runs nothing after it, inside a transaction or not", async () => {
      await db.execute(sql`truncate pipelined`);
      const statements = [
        sql`insert into pipelined (n) values (1)`,
        sql`insert into pipelined (n) values (1)`,
        sql`insert into pipelined (n) values (2)`,
      ];
      await expect(executePipelined(db, statements)).rejects.toThrow();
      expect(await stored()).toEqual([1]);

      await db.execute(sql`truncate pipelined`);
      const failure = await db
        .transaction((tx) => executePipelined(tx, [sql`insert into pipelined (n) values (7)`, ...statements]))
        .catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(Error);
      expect(await stored()).toEqual([]);
    });

    if (backend.name === "postgres") {
      it("builds the next statement while the previous one is still running", { timeout: SLOW }, async () => {
        // The first statement waits for a lock another transaction holds until the second
        // statement is built: built only after the first had finished, it would never be.
        const key = 4_242_424;
        let locked!: () => void;
        const isLocked = new Promise<void>((resolve) => {
          locked = resolve;
        });
        let release!: () => void;
        const released = new Promise<void>((resolve) => {
          release = resolve;
        });
        const holder = db.transaction(async (tx) => {
          await tx.execute(sql`select pg_advisory_xact_lock(${key})`);
          locked();
          await released;
        });
        await isLocked;
        function* statements(): Generator<SQL> {
          yield sql`select pg_advisory_xact_lock(${key})`;
          release();
          yield sql`select 1`;
        }
        expect(await executePipelined(db, statements())).toBe(2);
        await holder;
      });
    }
  });
}
