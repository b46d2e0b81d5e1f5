/**
 * Child: the load generator. Runs autocannon (keep-alive connections, no pipelining) in its own
 * process, so it never shares an event loop with the server it measures, and answers each run
 * with the numbers the runner keeps.
 */
import autocannon from "autocannon";
import { runChild } from "../child.ts";
import type { LoadOptions, LoadResult } from "../ipc.ts";

function run(o: LoadOptions): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: o.url,
        method: (o.method ?? "GET") as autocannon.Request["method"],
        headers: o.headers,
        connections: o.connections,
        pipelining: 1,
        duration: o.duration,
        ...(o.overallRate ? { overallRate: o.overallRate } : {}),
      },
      (err, r) => {
        if (err) return reject(err);
        const statuses: Record<string, number> = {};
        for (const [code, s] of Object.entries(
          (r as unknown as { statusCodeStats?: Record<string, { count: number }> }).statusCodeStats ?? {},
        )) {
          if (!code.startsWith("2")) statuses[code] = s.count;
        }
        const ok = r["2xx"];
        const lat = r.latency as unknown as Record<string, number>;
        resolve({
          rps: ok / r.duration,
          requests: r.requests.total,
          sent: (r.requests as unknown as { sent?: number }).sent ?? r.requests.total,
          ok,
          non2xx: r.non2xx,
          errors: r.errors,
          timeouts: r.timeouts,
          duration: r.duration,
          p50: lat.p50 ?? Number.NaN,
          p90: lat.p90 ?? Number.NaN,
          p99: lat.p99 ?? Number.NaN,
          mean: lat.average ?? Number.NaN,
          max: lat.max ?? Number.NaN,
          statuses,
        });
      },
    );
  });
}

runChild<Record<string, never>>(async () => ({
  port: 0,
  handle: (msg, reply) => {
    run(msg.options).then(
      (result) => reply({ type: "load-result", id: msg.id, result }),
      (err: unknown) =>
        reply({ type: "load-failed", id: msg.id, message: err instanceof Error ? err.message : String(err) }),
    );
  },
}));
