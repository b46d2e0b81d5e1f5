/**
 * The two postgres.js faults patches/postgres@3.4.9.patch mends besides its first (README there),
 * each on a real Postgres. Both matter to the stall watch, which destroys connections in any state:
 * - a connection lost mid-query left that query set, so `end()` waited for an answer that never
 *   comes (forever without a timeout; porsager/postgres#1097);
 * - a failed array-types query (the first statement of every new connection) was an unhandled
 *   rejection, which ends a Node process (porsager/postgres#1192);
 * - a socket that went while a write waited for the next turn left the connection unable to
 *   write again: every later startup on it timed out (LanternOps/breeze#3225).
 * - a transaction whose connection was lost mid-query wrote its rollback (and any later query of
 *   its callback) to no socket a turn later: a TypeError thrown from a timer, which ends a process.
 */
import { randomBytes } from "node:crypto";
import net from "node:net";
import { describeIntegration, TcpProxy, TEST_DATABASE_URL, targetOf, viaProxy } from "@phaselock/testkit";
import postgres from "postgres";
import { afterAll, beforeAll, expect, it } from "vitest";
import { createTestDatabase, type TestDatabase } from "./testing.ts";

describeIntegration("postgres.js as patched (Postgres)", ["postgres"], () => {
  let db: TestDatabase;
  const role = `pl_notypes_${randomBytes(6).toString("hex")}`;
  const admin = postgres(TEST_DATABASE_URL, { max: 1, onnotice: () => {} });

  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false, poolSize: 1 });
  });
  afterAll(async () => {
    await db?.drop();
    await admin.unsafe(`drop role if exists "${role}"`);
    await admin.end();
  });

  it("ends a pool at once after its connection was lost mid-query (no timeout needed)", async () => {
    const proxy = await TcpProxy.start(targetOf(db.url));
    try {
      const sql = postgres(viaProxy(db.url, proxy), { max: 1, onnotice: () => {} });
      const slow = sql`select pg_sleep(5)`.then(
        () => "answered",
        (err: { code?: string }) => err.code,
      );
      // Wait until the query is on the server, then lose the connection under it.
      const inner = postgres(db.url, { max: 1 });
      await expect
        .poll(
          async () =>
            (
              await inner`select count(*)::int as n from pg_stat_activity where query like 'select pg_sleep(5)%'`
            )[0]?.n,
          { timeout: 5_000, interval: 20 },
        )
        .toBe(1);
      await inner.end();
      proxy.cut();
      expect(await slow).toBe("CONNECTION_CLOSED");
      // Unpatched, this never settles: the test's timeout fails it.
      await sql.end();
    } finally {
      await proxy.close();
    }
  });

  it("a new connection whose array-types query fails rejects the query asked for, and nothing goes unhandled", async () => {
    await admin.unsafe(`create role "${role}" login`);
    const scratch = postgres(db.url, { max: 1, onnotice: () => {} });
    // In this database only: the role may not read pg_type, so postgres.js's types query fails.
    await scratch.unsafe(`revoke select on pg_catalog.pg_type from public`);
    await scratch.end();
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const u = new URL(db.url);
      u.username = role;
      const sql = postgres(u.toString(), { max: 1, onnotice: () => {} });
      const asked = await sql`select 1 as one`.then(
        () => "answered",
        (err: { code?: string }) => err.code,
      );
      expect(asked).toBe("42501"); // insufficient_privilege, the types query's
      await sql.end();
      // Let a dropped rejection surface: it is reported after the microtask queue drains.
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  it("a connection whose socket went while a write waited connects again and answers", async () => {
    const { hostname, port } = new URL(db.url);
    let sockets = 0;
    // postgres.js's `socket` option (not in its types): the first socket dies before the
    // startup message, written on the next turn, leaves; the ones after are real.
    const options = {
      max: 1,
      connect_timeout: 2,
      onnotice: () => {},
      socket: () =>
        new Promise<net.Socket>((resolve, reject) => {
          if (sockets++ === 0) {
            const dead = new net.Socket();
            setImmediate(() => dead.destroy(Object.assign(new Error("gone"), { code: "ECONNRESET" })));
            resolve(dead);
            return;
          }
          const s = net.connect({ host: hostname, port: Number(port || 5432) });
          s.once("connect", () => resolve(s)).once("error", reject);
        }),
    };
    const sql = postgres(db.url, options as postgres.Options<Record<string, never>>);
    try {
      const first = await sql`select 1 as one`.then(
        (rows) => rows[0]?.one,
        (err: { code?: string }) => err.code,
      );
      // The first query may fail with its socket; the connection must not stay unable to write.
      if (first !== 1) expect(first).toBe("ECONNRESET");
      const again = await sql`select 1 as one`.then(
        (rows) => rows[0]?.one,
        (err: { code?: string }) => err.code,
      );
      expect(again).toBe(1);
      expect(sockets).toBeGreaterThan(1);
    } finally {
      await sql.end({ timeout: 1 });
    }
  });

  it("a transaction whose connection is lost mid-query fails, and nothing throws from a timer", async () => {
    // begin() rolls back on the connection it lost, and a callback still running queries on it:
    // unpatched, each such write found no socket a turn later and threw a TypeError, uncaught,
    // which ends a Node process (any lost connection; the stall watch destroys them in any state).
    const proxy = await TcpProxy.start(targetOf(db.url));
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown) => uncaught.push(err);
    process.on("uncaughtException", onUncaught);
    const sql = postgres(viaProxy(db.url, proxy), { max: 1, onnotice: () => {} });
    try {
      let later: Promise<unknown> | undefined;
      const tx = sql
        .begin(async (t) => {
          await t`select 1`;
          setTimeout(() => proxy.cut(), 50);
          try {
            await t`select pg_sleep(5)`;
          } finally {
            // The callback's next query, as after any caught failure.
            later = t`select 2`.then(
              () => "answered",
              (err: { code?: string }) => err.code,
            );
          }
        })
        .then(
          () => "committed",
          (err: { code?: string }) => err.code,
        );
      expect(await tx).toBe("CONNECTION_CLOSED");
      expect(await later).toBe("CONNECTION_CLOSED");
      // Let a write scheduled for the next turn run.
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(uncaught).toEqual([]);
      proxy.restore();
      expect((await sql`select 3 as three`)[0]?.three).toBe(3);
    } finally {
      process.off("uncaughtException", onUncaught);
      await sql.end({ timeout: 1 });
      await proxy.close();
    }
  });
});
