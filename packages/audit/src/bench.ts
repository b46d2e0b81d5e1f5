import type { Db } from "@phaselock/db";
import type { AuditEventInput } from "./sink.ts";
import { appendEvents } from "./store.ts";

export interface BenchAppendOptions {
  /** Events per `appendEvents` call (one transaction each). Default 1,000, as the writer batches. */
  batch?: number;
  /** Start time of the synthetic events. */
  at?: Date;
}

/**
 * Appends `n` synthetic gateway access events in batches and returns the rate in events per
 * second (wall time, hashing and inserts included). Writes to the real `audit_events` table:
 * run it on a scratch database.
 */
export async function benchAppend(db: Db, n: number, opts: BenchAppendOptions = {}): Promise<number> {
  const batch = opts.batch ?? 1_000;
  const t0 = (opts.at ?? new Date("2026-01-01T00:00:00Z")).getTime();
  const events: AuditEventInput[] = Array.from({ length: n }, (_, i) => ({
    type: "access",
    at: new Date(t0 + i),
    actor: `vol-${i % 97}`,
    campaignId: "bench-campaign",
    linkId: `lnk_bench${i % 1_000}`,
    decision: i % 10 === 0 ? "deny" : "allow",
    reason: i % 10 === 0 ? "scope_denied" : null,
    data: { method: "GET", path: `/members/${i}`, status: 200, ms: i % 50 },
  }));
  const start = performance.now();
  for (let i = 0; i < n; i += batch) await appendEvents(db, events.slice(i, i + batch));
  const seconds = (performance.now() - start) / 1_000;
  return n / seconds;
}
