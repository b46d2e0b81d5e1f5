/**
 * The messages between the bench runner and its child processes (servers and the load driver),
 * over Node's IPC channel. A child waits for `start`, answers `ready` (or `failed`), then serves
 * until `stop` or until the channel closes (the runner died), and exits on its own.
 */

export type ToChild<C = unknown> =
  | { type: "start"; config: C }
  | { type: "stop" }
  | { type: "cpu"; id: number }
  | { type: "profile-start"; id: number }
  | { type: "profile-stop"; id: number; path: string }
  | { type: "stats"; id: number }
  | LoadRequest;

export type FromChild =
  | { type: "ready"; port: number }
  | { type: "failed"; message: string }
  | { type: "stopped"; stats?: Record<string, unknown> }
  /** answer to `cpu`: the child's `process.cpuUsage()`, µs */
  | { type: "cpu"; id: number; user: number; system: number }
  /** answer to `profile-start` / `profile-stop` (the profile is written to `path`) */
  | { type: "profile"; id: number; ok: boolean; message?: string }
  /** answer to `stats`: memory now, and event-loop delay since the previous `stats` (ms) */
  | ({ type: "stats"; id: number } & ProcessStats)
  | LoadReply;

export interface ProcessStats {
  rss: number;
  heapUsed: number;
  loopP50: number;
  loopP99: number;
  loopMax: number;
}

/** One autocannon run, done by the load driver child. */
export interface LoadOptions {
  url: string;
  method?: string;
  headers: Record<string, string>;
  connections: number;
  /** seconds */
  duration: number;
  /** requests per second over all connections (fixed rate); default as fast as answered */
  overallRate?: number;
}

export interface LoadRequest {
  type: "load";
  id: number;
  options: LoadOptions;
}

/** What the runner keeps of an autocannon result. Latencies in ms (autocannon's resolution: 1 ms). */
export interface LoadResult {
  /** 2xx responses per second of wall time */
  rps: number;
  requests: number;
  /** requests sent, answered or not (those in flight when the run ended are not in `requests`) */
  sent: number;
  ok: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** seconds */
  duration: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  max: number;
  /** status code → count, for the statuses that are not 2xx */
  statuses: Record<string, number>;
}

export type LoadReply =
  | { type: "load-result"; id: number; result: LoadResult }
  | { type: "load-failed"; id: number; message: string };
