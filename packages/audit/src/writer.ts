import type { Clock } from "@phaselock/core";
import type { Db } from "@phaselock/db";
import { type PreparedEvent, prepareEvent } from "./chain.ts";
import type { AuditEventInput, AuditSink } from "./sink.ts";
import { appendPrepared, type ChainHead } from "./store.ts";

export interface BatchAuditWriterOptions {
  db: Db;
  /** Source of time for `healthy()` bookkeeping (when each event was queued). */
  clock: Clock;
  /** Events per transaction. Default 1,000. */
  maxBatch?: number;
  /** How long a recorded event waits before a flush starts. Default 50 ms. */
  flushIntervalMs?: number;
  /** `healthy()` turns false once the oldest unwritten event is older than this. Default 2,000 ms. */
  failAfterMs?: number;
  /** Events held in memory at most; beyond it events are counted as dropped. Default 100,000. */
  maxQueue?: number;
  /**
   * Longest a durable event (`recordDurable`) waits for others to share its insert (group
   * commit). Default 2 ms.
   */
  lingerMs?: number;
  /** Longest wait between retries after a failed write. Default 1,000 ms. */
  maxBackoffMs?: number;
  /**
   * How long `close()` goes on retrying a failed write (with the same backoff) before it gives the
   * events up: a database back within it (a restart, a failover) loses nothing at shutdown.
   * Default 8,000 ms, inside the 30 s a container is usually given to stop; 0: one attempt.
   */
  closeRetryMs?: number;
  /** Told about every failed write, dropped event and unstorable event. */
  onError?: (err: unknown) => void;
  /** Told of every committed batch: seconds the insert took, events in it (for metrics). */
  onCommit?: (seconds: number, events: number) => void;
  /**
   * Chain each batch onto the head the previous one left, checked under the chain lock, so a
   * batch is one round trip while no other writer moved the head (`appendPrepared`). Default
   * true; false reads the head under the lock every time (four round trips; for comparisons).
   */
  rememberHead?: boolean;
}

interface Queued {
  event: PreparedEvent;
  /** `clock.now()` when recorded, in ms. */
  queuedAt: number;
  /** Set for `recordDurable`: settled when the batch holding the event commits or fails. */
  waiter?: { resolve: () => void; reject: (err: unknown) => void } | undefined;
}

/** Raised (through `onError`) when `record()` finds the queue full. */
export class AuditQueueFullError extends Error {
  readonly code = "audit_queue_full";
  readonly maxQueue: number;
  constructor(maxQueue: number) {
    super(`audit queue full (${maxQueue} events): dropping events until the database catches up`);
    this.name = "AuditQueueFullError";
    this.maxQueue = maxQueue;
  }
}

/**
 * The production `AuditSink`: `record()` only queues; a timer writes batches with
 * `appendEvents` and retries failed writes with backoff, keeping the events. `healthy()` turns
 * false while the oldest unwritten event is older than `failAfterMs` or the queue is full, so the
 * gateway can refuse (503) instead of serving requests it cannot audit.
 */
export class BatchAuditWriter implements AuditSink {
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #maxBatch: number;
  readonly #flushIntervalMs: number;
  readonly #failAfterMs: number;
  readonly #maxQueue: number;
  readonly #maxBackoffMs: number;
  readonly #closeRetryMs: number;
  readonly #lingerMs: number;
  readonly #onError: (err: unknown) => void;
  readonly #onCommit: ((seconds: number, events: number) => void) | undefined;
  readonly #rememberHead: boolean;
  /** The head the last committed batch left: a guess for the next, checked under the lock. */
  #head: ChainHead | undefined;

  #queue: Queued[] = [];
  /** Events ever queued / ever written: `flush()` waits for what was queued when it was called. */
  #queued = 0;
  #written = 0;
  #inflight: Promise<void> | null = null;
  /** A {@link #tick} loop is running. */
  #draining = false;
  #timer: NodeJS.Timeout | null = null;
  #lingerTimer: NodeJS.Timeout | null = null;
  #failures = 0;
  #closed = false;
  #dropped: { count: number; firstAt: Date; lastAt: Date } | null = null;

  constructor(opts: BatchAuditWriterOptions) {
    this.#db = opts.db;
    this.#clock = opts.clock;
    this.#maxBatch = positive(opts.maxBatch ?? 1_000, "maxBatch");
    this.#flushIntervalMs = nonNegative(opts.flushIntervalMs ?? 50, "flushIntervalMs");
    this.#failAfterMs = nonNegative(opts.failAfterMs ?? 2_000, "failAfterMs");
    this.#maxQueue = positive(opts.maxQueue ?? 100_000, "maxQueue");
    this.#maxBackoffMs = nonNegative(opts.maxBackoffMs ?? 1_000, "maxBackoffMs");
    this.#closeRetryMs = nonNegative(opts.closeRetryMs ?? 8_000, "closeRetryMs");
    this.#lingerMs = nonNegative(opts.lingerMs ?? 2, "lingerMs");
    this.#onError = opts.onError ?? (() => {});
    this.#onCommit = opts.onCommit;
    this.#rememberHead = opts.rememberHead ?? true;
  }

  /** Whether a drain of the queue (timer-started) is running: at most one ever is. */
  get draining(): boolean {
    return this.#draining;
  }

  /** Events recorded and not yet written. */
  get pending(): number {
    return this.#queue.length;
  }

  record(event: AuditEventInput): void {
    const now = this.#clock.now();
    if (this.#queue.length >= this.#maxQueue) {
      if (this.#dropped === null) {
        this.#dropped = { count: 0, firstAt: now, lastAt: now };
        this.#onError(new AuditQueueFullError(this.#maxQueue));
      }
      this.#dropped.count++;
      this.#dropped.lastAt = now;
      return;
    }
    this.#enqueue(this.#prepare(event, now), now);
  }

  /**
   * Group commit: the event joins the queue (denials and all) and the next insert starts within
   * `lingerMs`, or at once when a batch is full; resolves when that insert has committed.
   */
  recordDurable(event: AuditEventInput): Promise<void> {
    const now = this.#clock.now();
    if (this.#closed) return Promise.reject(new Error("audit writer closed"));
    // A full queue cannot promise durability soon: refuse, and the caller answers 503.
    if (this.#queue.length >= this.#maxQueue) return Promise.reject(new AuditQueueFullError(this.#maxQueue));
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({
        event: this.#prepare(event, now),
        queuedAt: now.getTime(),
        waiter: { resolve, reject },
      });
      this.#queued++;
      if (this.#queue.length >= this.#maxBatch) this.#kick(0);
      else this.#kick(this.#lingerMs);
    });
  }

  /** Starts a write within `delayMs`, sooner than the batching timer would. */
  #kick(delayMs: number): void {
    if (this.#lingerTimer !== null) return;
    this.#lingerTimer = setTimeout(() => {
      this.#lingerTimer = null;
      void this.#tick();
    }, delayMs);
    this.#lingerTimer.unref();
  }

  healthy(now: Date): boolean {
    if (this.#dropped !== null || this.#queue.length >= this.#maxQueue) return false;
    const oldest = this.#queue[0];
    return oldest === undefined || now.getTime() - oldest.queuedAt <= this.#failAfterMs;
  }

  /** Writes every event recorded before the call; rejects (keeping the events) if a write fails. */
  async flush(): Promise<void> {
    const target = this.#queued;
    while (this.#written < target && this.#queue.length > 0) await this.#writeBatch();
  }

  /**
   * Stops the timer and writes everything still queued, retrying a failed write with backoff for
   * up to `closeRetryMs`. Rejects if it still fails then.
   */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (this.#lingerTimer) clearTimeout(this.#lingerTimer);
    this.#lingerTimer = null;
    let waited = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        // A flush may queue the record of dropped events: loop until nothing is left.
        while (this.#queue.length > 0) await this.flush();
        return;
      } catch (err) {
        const backoff = Math.max(1, Math.min(this.#maxBackoffMs, this.#flushIntervalMs * 2 ** attempt));
        if (waited + backoff > this.#closeRetryMs) {
          throw new Error(`audit writer closed with ${this.#queue.length} unwritten events`, { cause: err });
        }
        this.#onError(err);
        waited += backoff;
        await new Promise((resolve) => setTimeout(resolve, backoff));
      }
    }
  }

  #prepare(event: AuditEventInput, now: Date): PreparedEvent {
    // Preparing now freezes the event (later mutation by the caller cannot change what is
    // hashed) and keeps one unstorable event from blocking the queue forever.
    try {
      return prepareEvent(event);
    } catch (err) {
      this.#onError(err);
      return prepareEvent({
        type: "audit.invalid_event",
        at: now,
        data: { type: String(event.type), error: err instanceof Error ? err.message : String(err) },
      });
    }
  }

  #enqueue(event: PreparedEvent, now: Date, internal = false): void {
    this.#queue.push({ event, queuedAt: now.getTime() });
    this.#queued++;
    if (this.#closed && !internal) {
      this.#onError(new Error("audit event recorded after close(): call flush() to write it"));
      return;
    }
    this.#schedule(this.#flushIntervalMs);
  }

  #schedule(delayMs: number): void {
    if (this.#timer !== null || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.#tick();
    }, delayMs);
    // Never keep the process alive for the audit timer: shutdown calls close().
    this.#timer.unref();
  }

  /**
   * Drains the queue, one batch at a time. One drain at a time: a timer that fires while one runs
   * leaves the queue to it. (Each linger timer used to start a loop of its own; under steady load
   * the queue is never empty when a batch commits, so none ever ended: ~1,500 loops after 5 s at
   * 32 waiting answers, every one woken by every commit.)
   */
  async #tick(): Promise<void> {
    if (this.#draining) return;
    this.#draining = true;
    try {
      while (this.#queue.length > 0) await this.#writeBatch();
      this.#failures = 0;
    } catch (err) {
      this.#failures++;
      this.#onError(err);
      const backoff = Math.min(this.#maxBackoffMs, this.#flushIntervalMs * 2 ** this.#failures);
      this.#schedule(Math.max(backoff, 1));
    } finally {
      this.#draining = false;
    }
  }

  /** One batch at a time, whoever asks (timer or flush()). */
  #writeBatch(): Promise<void> {
    this.#inflight ??= this.#write().finally(() => {
      this.#inflight = null;
    });
    return this.#inflight;
  }

  async #write(): Promise<void> {
    const batch = this.#queue.slice(0, this.#maxBatch);
    if (batch.length === 0) return;
    const started = performance.now();
    try {
      const r = await appendPrepared(
        this.#db,
        batch.map((q) => q.event),
        this.#head,
      );
      if (this.#rememberHead) this.#head = { seq: r.headSeq, hash: r.head };
    } catch (err) {
      this.#head = undefined;
      // The waiting answers are refused now; their events stay queued and are retried, so the
      // trail still shows the upstream was reached.
      for (const q of batch) {
        q.waiter?.reject(err);
        q.waiter = undefined;
      }
      throw err;
    }
    this.#queue.splice(0, batch.length);
    this.#written += batch.length;
    this.#onCommit?.((performance.now() - started) / 1000, batch.length);
    for (const q of batch) q.waiter?.resolve();
    const dropped = this.#dropped;
    if (dropped !== null) {
      // The loss itself goes into the chain, so the trail shows the gap.
      this.#dropped = null;
      const now = this.#clock.now();
      this.#enqueue(
        prepareEvent({
          type: "audit.dropped",
          at: now,
          data: {
            count: dropped.count,
            firstAt: dropped.firstAt.toISOString(),
            lastAt: dropped.lastAt.toISOString(),
          },
        }),
        now,
        true,
      );
    }
  }
}

function positive(n: number, name: string): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`${name} must be a positive integer`);
  return n;
}

function nonNegative(n: number, name: string): number {
  if (!Number.isFinite(n) || n < 0) throw new RangeError(`${name} must be zero or more`);
  return n;
}
