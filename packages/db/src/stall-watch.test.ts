/**
 * The stall watch (stall-watch.ts) on a real Postgres behind a TCP proxy this file stalls: the
 * connections stay open and nothing passes, as with a paused server or a partition that drops
 * packets. A short deadline; nothing here waits on a clock of the test's own.
 */
import dns from "node:dns";
import net from "node:net";
import { describeIntegration, TcpProxy, targetOf, viaProxy } from "@phaselock/testkit";
import { sql } from "drizzle-orm";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { createDb, type DbHandle } from "./client.ts";
import { queryRows } from "./sql.ts";
import { singleTcpHost, stallWatchFor } from "./stall-watch.ts";
import { createTestDatabase, type TestDatabase } from "./testing.ts";

/** The driver's code of `err` or of what it wraps (drizzle wraps driver errors in `cause`). */
const codeOf = (err: unknown): unknown => {
  for (let e = err; e && typeof e === "object"; e = (e as { cause?: unknown }).cause) {
    const code = (e as { code?: unknown }).code;
    if (code !== undefined) return code;
  }
  return undefined;
};

describeIntegration("a Postgres that stops answering (stall watch)", ["postgres"], () => {
  let db: TestDatabase;
  let proxy: TcpProxy;
  let handle: DbHandle | undefined;

  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false, poolSize: 1 });
    proxy = await TcpProxy.start(targetOf(db.url));
  });
  afterEach(async () => {
    proxy.restore();
    await handle?.close();
    handle = undefined;
  });
  afterAll(async () => {
    await proxy?.close();
    await db?.drop();
  });

  const open = (
    stallWatch: false | { intervalMs: number; deadlineMs: number } = { intervalMs: 20, deadlineMs: 250 },
  ) => {
    handle = createDb({ databaseUrl: viaProxy(db.url, proxy), poolSize: 2, stallWatch });
    return handle.db;
  };
  const one = async (d: DbHandle["db"]) =>
    (await queryRows<{ one: number }>(d, sql`select 1 as one`))[0]?.one;

  it("fails a query in flight as a closed connection, then works again once the server answers", async () => {
    const d = open();
    expect(await one(d)).toBe(1);
    proxy.stall();
    const failed = await one(d).then(
      () => "answered",
      (err: unknown) => codeOf(err),
    );
    expect(failed).toBe("CONNECTION_CLOSED");
    // Until the probe is answered again new connections fail at once; then the pool works again.
    proxy.restore();
    await expect.poll(() => one(d).catch(() => 0), { timeout: 5_000, interval: 20 }).toBe(1);
  });

  it("fails new queries too while the stall lasts, rather than queueing them", async () => {
    const d = open();
    expect(await one(d)).toBe(1);
    proxy.stall();
    const codes = await Promise.all(
      [1, 2, 3].map(() =>
        one(d).then(
          () => "answered",
          (err: unknown) => codeOf(err),
        ),
      ),
    );
    for (const code of codes) expect(["CONNECTION_CLOSED", "ETIMEDOUT"]).toContain(code);
    // Once the server answers again, so does the pool.
    proxy.restore();
    await expect.poll(() => one(d).catch(() => 0), { timeout: 5_000, interval: 20 }).toBe(1);
  });

  it("leaves a query alone that the server is still working on (it answers the probe meanwhile)", async () => {
    const d = open();
    // Four times the deadline without a byte back on that connection: a long statement or a
    // lock wait, on a server that answers.
    const rows = await queryRows<{ done: boolean }>(d, sql`select pg_sleep(1.0) is not null as done`);
    expect(rows[0]?.done).toBe(true);
  });

  it("without the watch, a stalled query is still waiting when the watched one has failed", async () => {
    const watched = open();
    const unwatched = createDb({ databaseUrl: viaProxy(db.url, proxy), poolSize: 1, stallWatch: false });
    try {
      expect(await one(watched)).toBe(1);
      expect(await one(unwatched.db)).toBe(1);
      proxy.stall();
      let settled = false;
      const pending = one(unwatched.db).finally(() => {
        settled = true;
      });
      await expect(one(watched)).rejects.toBeDefined();
      expect(settled).toBe(false);
      proxy.restore();
      expect(await pending).toBe(1);
    } finally {
      await unwatched.close();
    }
  });

  it("does not take a pause of this process for a server that stopped answering", async () => {
    // The probe's question goes out, the server answers at once, and this process then does not
    // run for longer than the deadline (a long synchronous task, a GC pause, a paused VM): the
    // answer waits unread, and a timer runs before any socket is read. A healthy pool stays.
    const connect = net.connect;
    let paused = false;
    const spy = vi.spyOn(net, "connect").mockImplementation(((...args: Parameters<typeof net.connect>) => {
      const s = connect(...args);
      const write = s.write;
      s.write = function (this: net.Socket, ...w: Parameters<net.Socket["write"]>) {
        const written = write.apply(this, w);
        if (!paused && Buffer.isBuffer(w[0]) && w[0].includes("select 1\0")) {
          paused = true;
          const until = performance.now() + 600;
          while (performance.now() < until) {}
        }
        return written;
      } as net.Socket["write"];
      return s;
    }) as typeof net.connect);
    try {
      handle = createDb({
        databaseUrl: db.url,
        poolSize: 2,
        stallWatch: { intervalMs: 20, deadlineMs: 250 },
      });
      const rows = await queryRows<{ done: boolean }>(
        handle.db,
        sql`select pg_sleep(1.5) is not null as done`,
      );
      expect(paused).toBe(true);
      expect(rows[0]?.done).toBe(true);
    } finally {
      spy.mockRestore();
    }
  });

  it("watches the server postgres.js connects to: a URL without a port takes PGPORT", async () => {
    const saved = process.env.PGPORT;
    process.env.PGPORT = String(proxy.port);
    try {
      const u = new URL(viaProxy(db.url, proxy));
      u.port = "";
      handle = createDb({
        databaseUrl: u.toString(),
        poolSize: 1,
        stallWatch: { intervalMs: 20, deadlineMs: 250 },
      });
      expect(await one(handle.db)).toBe(1);
      // Through the proxy, as without the watch: cut, the query fails.
      proxy.cut();
      await expect(one(handle.db)).rejects.toBeDefined();
    } finally {
      if (saved === undefined) delete process.env.PGPORT;
      else process.env.PGPORT = saved;
    }
  });

  it("does not count a slow lookup of the host's name as the server not answering", async () => {
    // A resolver that takes longer than the deadline (a lost UDP packet waits out the resolver's
    // 5 s; the threadpool busy): the probe's connection has not reached the server yet.
    const lookup = dns.lookup;
    const spy = vi.spyOn(dns, "lookup").mockImplementation(((...args: unknown[]) => {
      setTimeout(() => (lookup as (...a: unknown[]) => void)(...args), 400);
    }) as typeof dns.lookup);
    try {
      const u = new URL(db.url);
      u.hostname = "localhost";
      handle = createDb({
        databaseUrl: u.toString(),
        poolSize: 2,
        stallWatch: { intervalMs: 20, deadlineMs: 250 },
      });
      const rows = await queryRows<{ done: boolean }>(
        handle.db,
        sql`select pg_sleep(1.5) is not null as done`,
      );
      expect(rows[0]?.done).toBe(true);
      expect(spy).toHaveBeenCalled();
    } finally {
      spy.mockRestore();
    }
  });

  it("leaves a URL that asks for TLS to TCP, as one with several hosts or a socket path", () => {
    // Through TLS the watch sees no write, and postgres.js's upgrade removes every listener of the
    // raw socket (the watch's `close` too): each connection's socket would be kept for good.
    const base = "postgres://u:p@db.internal:6432/phaselock";
    for (const q of [
      "sslmode=require",
      "sslmode=verify-full",
      "ssl=true",
      "sslmode=prefer",
      "sslrootcert=system",
    ]) {
      expect([q, singleTcpHost(`${base}?${q}`)]).toEqual([q, null]);
    }
    for (const q of ["", "?sslmode=disable", "?ssl=false"]) {
      expect([q, singleTcpHost(`${base}${q}`)]).toEqual([q, { host: "db.internal", port: 6432 }]);
    }
    expect(singleTcpHost("postgres://u@[::1]:5433/x")).toEqual({ host: "::1", port: 5433 });
    expect(singleTcpHost("postgres://u@a:1,b:2/x")).toBeNull();
    expect(singleTcpHost("postgres://u@/x?host=/var/run/postgresql")).toBeNull();
  });
});

describe("stallWatchFor (DB_STALL_TIMEOUT_MS)", () => {
  it("0 turns the watch off; unset is the default; a value is the deadline", () => {
    expect(stallWatchFor(0)).toBe(false);
    expect(stallWatchFor(undefined)).toEqual({});
    expect(stallWatchFor(2500)).toEqual({ deadlineMs: 2500 });
  });
});
