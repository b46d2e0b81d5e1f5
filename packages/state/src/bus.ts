import { type ChangeHint, type ChangeMessage, decodeHint, encodeHint } from "./changes.ts";

/**
 * What a subscriber hears besides messages:
 * - `connected`: the subscription is (again) active. Messages may have been lost before it, so
 *   the subscriber reloads.
 * - `disconnected`: the feed is down; no message can arrive until `connected`.
 * - `heartbeat`: a round trip through the feed just succeeded.
 * - `gap`: a message was lost or unreadable; the subscriber must reload.
 */
export type BusStatus = "connected" | "disconnected" | "heartbeat" | "gap";

export interface BusListener {
  /**
   * A hint: read the change log now. Nothing in it is applied. The in-process bus awaits a
   * returned promise, so in the single-instance setup a write answers once it is applied.
   */
  onMessage(hint: ChangeHint): void | Promise<void>;
  onStatus(status: BusStatus): void;
}

/**
 * The change feed: publishers announce that Postgres holds a newer policy version; every
 * instance then reads the change log (`LoggedFeed`). It carries no authority.
 */
export interface ChangeBus {
  /** Rejects when the hint cannot be handed to the feed (e.g. Redis is down). */
  publish(hint: ChangeHint): Promise<void>;
  /** Returns an unsubscribe function. */
  subscribe(listener: BusListener): () => void;
  close(): Promise<void>;
}

export interface MemoryBusOptions {
  /** Interval of the timer that reports `heartbeat`; 0 disables it (tests call `heartbeat()`). */
  heartbeatMs?: number;
}

/**
 * In-process bus for the single-instance setup. Delivery is synchronous and cannot be lost, so
 * it reports `connected` on subscribe and a `heartbeat` on every tick of its timer. Each
 * subscriber gets its own copy of a message.
 */
export class MemoryBus implements ChangeBus {
  readonly #listeners = new Set<BusListener>();
  readonly #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(opts: MemoryBusOptions = {}) {
    const heartbeatMs = opts.heartbeatMs ?? 1000;
    if (heartbeatMs > 0) {
      this.#timer = setInterval(() => this.heartbeat(), heartbeatMs);
      this.#timer.unref();
    }
  }

  async publish(hint: ChangeHint): Promise<void> {
    if (this.#closed) throw new Error("change bus is closed");
    // Through the wire form, as on Redis: only the version travels.
    const decoded = decodeHint(encodeHint(hint));
    if (!decoded) throw new TypeError("malformed change hint");
    // A snapshot of the set, so a listener that unsubscribes while handling does not skip others.
    await Promise.all([...this.#listeners].map(async (l) => l.onMessage({ ...decoded })));
  }

  subscribe(listener: BusListener): () => void {
    if (this.#closed) throw new Error("change bus is closed");
    this.#listeners.add(listener);
    listener.onStatus("connected");
    return () => {
      this.#listeners.delete(listener);
    };
  }

  /** Reports a heartbeat to every subscriber. */
  heartbeat(): void {
    for (const l of [...this.#listeners]) l.onStatus("heartbeat");
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    for (const l of [...this.#listeners]) l.onStatus("disconnected");
    this.#listeners.clear();
  }
}

/** What {@link ChangeFeed} delivers: changes read from the Postgres change log. */
export interface FeedListener {
  onMessage(msg: ChangeMessage): void;
  onStatus(status: BusStatus): void;
}

/** Changes as `PolicyState` follows them: from the change log, paced by the bus (`LoggedFeed`). */
export interface ChangeFeed {
  subscribe(listener: FeedListener): () => void;
}
