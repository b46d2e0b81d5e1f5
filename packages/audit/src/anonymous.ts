import type { Clock } from "@phaselock/core";
import type { AuditEvent, AuditEventOf } from "./events.ts";
import type { AuditSink } from "./sink.ts";

/** The route of a request no route of the table matches (its path is kept only as a hash). */
export const UNMAPPED_ROUTE = "unmapped";

/** The client hash of the bucket that collects every client past `maxClients` in one minute. */
export const OVERFLOW_CLIENT = "overflow";

const MINUTE_MS = 60_000;

export interface AnonymousDenialSinkOptions {
  /** Where every event goes: aggregated ones when their minute ends or on `flush()`/`close()`. */
  sink: AuditSink;
  clock: Clock;
  /**
   * Distinct client hashes kept per minute; later clients in the same minute are counted in one
   * `overflow` bucket. Default 10,000.
   */
  maxClients?: number;
  /** How often (real time) a timer looks for ended minutes. Default 5,000 ms; 0 turns it off. */
  sweepMs?: number;
}

interface Bucket {
  ipHash: string | null;
  minute: number;
  count: number;
  reasons: Record<string, number>;
  routes: Record<string, number>;
  firstAt: Date;
  lastAt: Date;
}

/**
 * An {@link AuditSink} in front of another that bounds anonymous denials — `access` denials that
 * name no link (no valid credential: token_missing, token_invalid, session_required…): a client
 * hash's first one in a UTC minute passes straight through, as itself, and the rest of that
 * minute are folded into one `access.anonymous_denied` event with counts per reason and route.
 * So at most two events per client and minute, however hard it knocks, and a single refused
 * request is in the log at once. Everything else passes straight through. A minute's aggregates
 * are written once a later minute is seen (on a record or the sweep timer) and on
 * `flush()`/`close()`, so at most one minute's worth (bounded by `maxClients`) is held in memory.
 */
export class AnonymousDenialSink implements AuditSink {
  readonly #sink: AuditSink;
  readonly #clock: Clock;
  readonly #maxClients: number;
  /**
   * Buckets by minute, then by client hash (`""` for none, OVERFLOW_CLIENT for the overflow). A
   * record touches only its own minute (a map lookup), and a sweep only the minutes held (one or
   * two): never every client, which an attacker rotating addresses makes 10,000 per minute.
   */
  readonly #minutes = new Map<number, Map<string, Bucket>>();
  readonly #timer: NodeJS.Timeout | null;
  /** Set by stop()/close(): nothing is held any more, since nothing would write it. */
  #stopped = false;

  constructor(opts: AnonymousDenialSinkOptions) {
    this.#sink = opts.sink;
    this.#clock = opts.clock;
    this.#maxClients = opts.maxClients ?? 10_000;
    if (!Number.isInteger(this.#maxClients) || this.#maxClients < 1) {
      throw new RangeError("maxClients must be a positive integer");
    }
    const sweepMs = opts.sweepMs ?? 5_000;
    this.#timer = sweepMs > 0 ? setInterval(() => this.#sweep(this.#clock.now().getTime()), sweepMs) : null;
    this.#timer?.unref();
  }

  /** Anonymous denials held, not yet recorded into the inner sink. */
  get held(): number {
    let n = 0;
    for (const clients of this.#minutes.values()) for (const b of clients.values()) n += b.count;
    return n;
  }

  record(event: AuditEvent): void {
    if (!isAnonymousDenial(event) || this.#stopped) {
      this.#sink.record(event);
      return;
    }
    const at = event.at;
    const minute = Math.floor(at.getTime() / MINUTE_MS) * MINUTE_MS;
    this.#sweep(this.#clock.now().getTime(), minute);
    const ip = event.data.ipHash ?? null;
    let clients = this.#minutes.get(minute);
    if (!clients) {
      clients = new Map();
      this.#minutes.set(minute, clients);
    }
    let key = ip ?? "";
    let bucket = clients.get(key);
    // A client hash never equals OVERFLOW_CLIENT (hex), but one sent as such joins the overflow.
    if (!bucket && (clients.size >= this.#maxClients || key === OVERFLOW_CLIENT)) {
      key = OVERFLOW_CLIENT;
      bucket = clients.get(key);
    }
    if (!bucket) {
      // A client's first anonymous denial of the minute is written as itself, at once: one request
      // refused is one event an admin can find straight away. Only the rest of its minute is folded.
      clients.set(key, {
        ipHash: key === OVERFLOW_CLIENT ? OVERFLOW_CLIENT : ip,
        minute,
        count: 0,
        reasons: {},
        routes: {},
        firstAt: at,
        lastAt: at,
      });
      this.#sink.record(event);
      return;
    }
    if (bucket.count === 0) {
      bucket.firstAt = at;
      bucket.lastAt = at;
    }
    bucket.count++;
    const reason = event.reason ?? "unknown";
    bucket.reasons[reason] = (bucket.reasons[reason] ?? 0) + 1;
    // Routes are the table's patterns or `unmapped`: a small, fixed set.
    bucket.routes[event.data.route] = (bucket.routes[event.data.route] ?? 0) + 1;
    if (at < bucket.firstAt) bucket.firstAt = at;
    if (at > bucket.lastAt) bucket.lastAt = at;
  }

  recordDurable(event: AuditEvent): Promise<void> {
    return this.#sink.recordDurable(event);
  }

  healthy(now: Date): boolean {
    return this.#sink.healthy(now);
  }

  /** Records every held aggregate into the inner sink (ended minute or not), then flushes it. */
  async flush(): Promise<void> {
    this.drain();
    await this.#sink.flush();
  }

  /** Records every held aggregate into the inner sink, then closes it. */
  async close(): Promise<void> {
    this.stop();
    await this.#sink.close();
  }

  /**
   * Stops the sweep timer and records every held aggregate, leaving the inner sink open; later
   * anonymous denials (a request still running past the drain) pass straight through.
   */
  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.drain();
  }

  /** Records every held aggregate into the inner sink without flushing or closing it. */
  drain(): void {
    for (const minute of [...this.#minutes.keys()].sort((a, b) => a - b)) this.#write(minute);
  }

  /** Records one minute's buckets into the inner sink and forgets them. */
  #write(minute: number): void {
    const clients = this.#minutes.get(minute);
    this.#minutes.delete(minute);
    for (const b of clients?.values() ?? []) if (b.count > 0) this.#sink.record(toEvent(b));
  }

  /** Records the buckets of minutes that have ended (before `nowMs`'s minute and `keep`). */
  #sweep(nowMs: number, keep?: number): void {
    if (this.#minutes.size === 0) return;
    const current = Math.floor(nowMs / MINUTE_MS) * MINUTE_MS;
    for (const minute of [...this.#minutes.keys()]) {
      if (minute < current && minute !== keep) this.#write(minute);
    }
  }
}

/** A gateway `access` denial that names no link: no valid credential was presented. */
function isAnonymousDenial(e: AuditEvent): e is AuditEventOf<"access"> {
  return (
    e.type === "access" && e.decision === "deny" && (e.linkId ?? null) === null && (e.actor ?? null) === null
  );
}

function toEvent(b: Bucket): AuditEventOf<"access.anonymous_denied"> {
  return {
    type: "access.anonymous_denied",
    at: b.lastAt,
    decision: "deny",
    reason: "anonymous",
    data: {
      ipHash: b.ipHash,
      minute: new Date(b.minute).toISOString(),
      count: b.count,
      reasons: b.reasons,
      routes: b.routes,
      firstAt: b.firstAt.toISOString(),
      lastAt: b.lastAt.toISOString(),
    },
  };
}
