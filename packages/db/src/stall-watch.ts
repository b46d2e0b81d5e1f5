import net from "node:net";
import type { Sql } from "postgres";
import postgres from "postgres";

/**
 * A database that stops answering while its connections stay open (a paused server, a partition
 * that drops packets, a proxy that hangs) fails nothing by itself: postgres.js waits on the open
 * socket for as long as TCP does, and every request waiting on a query hangs with it, where a
 * refused or reset connection answers `503 unavailable` at once.
 *
 * Taking a query's duration alone as the sign would cut legitimate waits (a lock held by a long
 * batch, a big verify), so once a query of the pool has waited `intervalMs`, a connection of the
 * watch's own asks the server a question that waits on nothing (`select 1`). When that gets no
 * answer at all within `deadlineMs`, the server is taken to have stopped answering: every
 * connection of the pool is destroyed (their queries fail CONNECTION_CLOSED, the services' 503),
 * and until the probe is answered again the pool's new connections fail at once (ETIMEDOUT)
 * instead of each waiting out a startup that cannot finish. The probe then asks every
 * `intervalMs`, and the first answer ends the stall. A probe that fails outright (refused, reset,
 * too many clients) is an answer: the pool's own connections report that kind of failure
 * themselves.
 *
 * A write cut this way may still have committed (its COMMIT reached the server before the stall):
 * a 503 on a write means its outcome is unknown, as after any lost connection. Over TLS the watch
 * sees nothing (postgres.js then writes through the TLS socket, around the raw socket's `write`),
 * so such a pool waits for TCP as before; docs/operations.md "A database that stops answering".
 */
export interface StallWatchOptions {
  /** how long a query waits before the probe asks; how often it asks during a stall, ms (default 1,000) */
  intervalMs?: number;
  /** how long the probe waits for an answer before the pool is destroyed, ms (default 5,000) */
  deadlineMs?: number;
}

export const DEFAULT_STALL_DEADLINE_MS = 5_000;

/** createDb's `stallWatch` for `DB_STALL_TIMEOUT_MS` (core's `dbStallTimeoutMs`): 0 is off, unset the default. */
export const stallWatchFor = (timeoutMs: number | undefined): StallWatchOptions | false =>
  timeoutMs === 0 ? false : timeoutMs === undefined ? {} : { deadlineMs: timeoutMs };

/** Probe failures that are not an answer: nothing came back (or the watch cut the socket). */
const NO_ANSWER = new Set(["CONNECT_TIMEOUT", "ETIMEDOUT", "CONNECTION_CLOSED", "CONNECTION_DESTROYED"]);

export interface StallWatch {
  /** postgres.js's `socket` option for the pool watched: opens a tracked TCP connection */
  socket: () => Promise<net.Socket>;
  /** starts probing through `url` */
  start(url: string): void;
  /** whether the server is taken to have stopped answering (no probe answered since) */
  readonly stalled: boolean;
  close(): Promise<void>;
}

/** Whether postgres.js opens TLS for `u`: its `ssl`/`sslmode` parameter, else PGSSL (as it reads them). */
function asksTls(u: URL): boolean {
  const q = u.searchParams;
  const mode = q.get("sslmode") || (q.has("ssl") ? q.get("ssl") : process.env.PGSSL);
  if (u.searchParams.get("sslrootcert") === "system") return true;
  return mode !== undefined && mode !== null && mode !== "" && mode !== "disable" && mode !== "false";
}

/**
 * The host and port of a URL with one TCP host, else `null` (a socket path, several hosts, TLS:
 * the watch sees nothing through TLS, and postgres.js's TLS upgrade removes every listener of the
 * raw socket, the watch's `close` too, so each connection's socket would be kept for good).
 */
export function singleTcpHost(url: string): { host: string; port: number } | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if (u.hostname === "" || u.hostname.includes(",") || u.searchParams.has("host") || asksTls(u)) return null;
  // The port postgres.js takes: the URL's, else PGPORT, else 5432 (the watch's sockets replace its own).
  return { host: u.hostname.replace(/^\[|\]$/g, ""), port: Number(u.port || process.env.PGPORT || 5432) };
}

const notAnswering = () =>
  Object.assign(new Error("the database is not answering (stall watch)"), { code: "ETIMEDOUT" });

export function createStallWatch(
  target: { host: string; port: number },
  opts: StallWatchOptions = {},
): StallWatch {
  const intervalMs = opts.intervalMs ?? 1_000;
  const deadlineMs = opts.deadlineMs ?? DEFAULT_STALL_DEADLINE_MS;
  /** every open socket, the probe's too: what a stall destroys */
  const sockets = new Set<net.Socket>();
  /** the pool's sockets waiting for an answer, each with when it last wrote after its last read */
  const waiting = new Map<net.Socket, number>();
  let probe: Sql | undefined;
  let timer: NodeJS.Timeout | undefined;
  /** when the probe in flight asked, else null */
  let askedAt: number | null = null;
  /** counts the probes, so that a late outcome of one given up on is ignored */
  let asks = 0;
  let stalled = false;
  let closed = false;
  /** when the last tick ran: a late tick means this process was not running */
  let lastTick = 0;
  /** the probe's socket while it looks up the server's name: the server is not asked yet */
  let lookingUp: net.Socket | undefined;

  // Never a rejection: postgres.js leaves a connection whose socket factory rejected stuck in
  // "connecting", and the pool with it. Every failure reaches it as the socket's own error event
  // (its reconnect path), and its connect_timeout covers the TCP connect too, since it starts the
  // timer before it writes the startup message (which a connecting socket holds until connected).
  const open = async (pool: boolean): Promise<net.Socket> => {
    if (pool && stalled) {
      const dead = new net.Socket();
      setImmediate(() => dead.destroy(notAnswering()));
      return dead;
    }
    const s = net.connect({ host: target.host, port: target.port });
    sockets.add(s);
    s.once("close", () => {
      sockets.delete(s);
      waiting.delete(s);
      if (lookingUp === s) lookingUp = undefined;
    });
    if (pool) watchAnswers(s);
    else if (net.isIP(target.host) === 0) {
      // A slow resolver (a lost UDP packet waits out its timeout, a busy threadpool) is not the
      // server: the deadline starts once the name is looked up.
      lookingUp = s;
      s.once("lookup", () => {
        if (lookingUp !== s) return;
        lookingUp = undefined;
        if (askedAt !== null) askedAt = Math.max(askedAt, performance.now());
      });
    }
    return s;
  };

  /** Notes when `s` writes with nothing read since, and forgets it once anything is read. */
  const watchAnswers = (s: net.Socket) => {
    const write = s.write;
    s.write = function (this: net.Socket, ...args: Parameters<net.Socket["write"]>) {
      if (!waiting.has(s)) waiting.set(s, performance.now());
      return write.apply(this, args);
    } as net.Socket["write"];
    s.on("data", () => waiting.delete(s));
  };

  const ask = (sql: Sql, now: number) => {
    const n = ++asks;
    askedAt = now;
    sql`select 1`.then(
      () => {
        if (n !== asks) return;
        askedAt = null;
        stalled = false;
      },
      (err: unknown) => {
        if (n !== asks) return;
        askedAt = null;
        if (!NO_ANSWER.has((err as { code?: unknown })?.code as string)) stalled = false;
      },
    );
  };

  const tick = () => {
    if (closed || probe === undefined) return;
    const now = performance.now();
    // A late tick: this process did not run (a long synchronous task, a GC pause, a paused VM), so
    // an answer that came meanwhile is still unread (timers run before sockets are read). That
    // time counts against no deadline.
    const late = now - lastTick - intervalMs;
    lastTick = now;
    if (askedAt !== null && late > 0) askedAt += late;
    if (askedAt !== null) {
      if (lookingUp !== undefined || now - askedAt < deadlineMs) return;
      // No answer at all for the whole deadline: the server stopped answering. The probe's own
      // socket goes too; its outcome, whenever it comes, no longer counts.
      askedAt = null;
      asks++;
      stalled = true;
      for (const s of sockets) s.destroy();
    }
    if (stalled) return ask(probe, now);
    // Not stalled: only once a query of the pool has waited a while, so an idle service asks nothing.
    for (const since of waiting.values()) if (now - since >= intervalMs) return ask(probe, now);
  };

  return {
    socket: () => open(true),
    get stalled() {
      return stalled;
    },
    start(url) {
      if (probe !== undefined || closed) return;
      // `socket` is postgres.js's documented option for a socket of one's own (not in its types);
      // the probe's connection closes once idle, so a quiet service holds no extra connection.
      const options = {
        max: 1,
        connect_timeout: Math.max(1, Math.ceil(deadlineMs / 1000)),
        idle_timeout: 10,
        // A probe of a server found stalled reconnects as soon as it asks again.
        backoff: () => 0,
        onnotice: () => {},
        socket: () => open(false),
      };
      probe = postgres(url, options as postgres.Options<Record<string, never>>);
      lastTick = performance.now();
      timer = setInterval(tick, intervalMs);
      timer.unref();
    },
    async close() {
      closed = true;
      if (timer) clearInterval(timer);
      await probe?.end({ timeout: 0 }).catch(() => {});
    },
  };
}
