import type { Server } from "node:http";

export interface ShutdownOptions {
  /** who is stopping, for the lines written */
  name: string;
  servers: readonly Server[];
  /** in-flight requests get this long to finish before their connections are cut (default 10 s) */
  drainMs?: number;
  /** after the servers have stopped: flush audit events, close pools */
  close: () => Promise<void>;
  log?: (line: string) => void;
  /** default process.exit */
  exit?: (code: number) => void;
  /** milliseconds, for telling a relayed copy of the first signal from a second one (default Date.now) */
  now?: () => number;
}

/**
 * The same signal again within this is the first one relayed, not a second: `pnpm
 * start:<service>` runs the service under two pnpm processes and tsx, each passing the signal it
 * gets to a process group the service is in too, so one SIGTERM arrives two or three times within
 * milliseconds. Taken as "exit now", it cut every in-flight request of a graceful stop.
 */
const RELAYED_WITHIN_MS = 1000;

/**
 * Graceful shutdown on SIGTERM/SIGINT: stop accepting, let in-flight requests finish (bounded by
 * `drainMs`, then their connections are cut), run `close` (which writes every buffered audit event
 * and closes the pools), exit 0 — 1 when `close` failed. A second signal exits at once with 130
 * (another signal, or the same one {@link RELAYED_WITHIN_MS} or more after the first).
 * Returns the function a signal calls, for tests and for a caller's own reasons to stop.
 */
export function installShutdown(opts: ShutdownOptions): (signal: string) => Promise<void> {
  const log = opts.log ?? ((line) => console.error(line));
  const exit = opts.exit ?? ((code) => process.exit(code));
  const drainMs = opts.drainMs ?? 10_000;
  const now = opts.now ?? Date.now;
  let stopping: { signal: string; at: number } | undefined;

  const stop = async (signal: string) => {
    if (stopping) {
      if (signal === stopping.signal && now() - stopping.at < RELAYED_WITHIN_MS) return;
      log(`${opts.name}: ${signal} again, exiting now`);
      exit(130);
      return;
    }
    stopping = { signal, at: now() };
    log(`${opts.name}: ${signal}, draining in-flight requests (up to ${drainMs} ms)`);
    await drain(opts.servers, drainMs);
    try {
      await opts.close();
    } catch (err) {
      log(`${opts.name}: shutdown incomplete: ${(err as Error).message}`);
      exit(1);
      return;
    }
    log(`${opts.name}: stopped`);
    exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
  return stop;
}

/**
 * Stops the servers accepting and resolves once their in-flight requests have finished, or after
 * `drainMs` with the connections still open cut. Keep-alive connections are closed as they go idle.
 */
export async function drain(servers: readonly Server[], drainMs: number): Promise<void> {
  // A connection goes as soon as its answer has been written out: keep-alive lasts a moment. Not
  // closeIdleConnections() on a timer: it also destroys a connection whose response has ended but
  // whose bytes still wait for a slow reader (it looks at `finished`, set by end()), which cut
  // a 10,000-link batch's answer after its first 4 MB.
  for (const s of servers) {
    s.keepAliveTimeout = 1;
    // Node 24 waits this much longer (default 1 s) than keepAliveTimeout; older versions have none.
    (s as { keepAliveTimeoutBuffer?: number }).keepAliveTimeoutBuffer = 0;
  }
  let timer: NodeJS.Timeout | undefined;
  const cut = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      for (const s of servers) s.closeAllConnections();
      resolve();
    }, drainMs);
  });
  const closed = Promise.all(
    servers.map(
      (s) =>
        new Promise<void>((resolve) => {
          if (!s.listening) return resolve();
          s.close(() => resolve());
          s.closeIdleConnections();
        }),
    ),
  ).then(() => undefined);
  await Promise.race([closed, cut]);
  clearTimeout(timer);
}
