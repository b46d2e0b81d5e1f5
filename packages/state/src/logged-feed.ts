import type { BusStatus, ChangeBus, ChangeFeed, FeedListener } from "./bus.ts";
import { type ChangeMessage, decodeLoggedChange } from "./changes.ts";

/** Where changes are read from: the `policy_changes` log in Postgres (`loadPolicyChanges`). */
export interface ChangeLog {
  /** The stored version and the logged changes after `after`, in version order (maybe capped). */
  since(after: number): Promise<{ stored: number; changes: Array<{ version: number; change: unknown }> }>;
}

export interface LoggedFeedOptions {
  bus: ChangeBus;
  log: ChangeLog;
  /** The follower's version (`PolicyState.status().version`); null before its first load. */
  position: () => number | null;
  /** Poll interval for the log; `false` turns the poll off (tests drive `catchUp()`). Default 1000 ms. */
  pollMs?: number | false;
  onError?: (err: unknown) => void;
}

/**
 * The change feed as `PolicyState` follows it: changes come only from the Postgres change log;
 * the bus merely says when to read it. A hint (or anything else on the channel) triggers a read
 * of `version > mine`; nothing in it is applied, so a forged or replayed message changes no
 * decision and a forged version cannot run ahead of Postgres. A heartbeat is passed on only
 * after such a read succeeds, so freshness needs both a live feed and a reachable Postgres.
 */
export class LoggedFeed implements ChangeFeed {
  readonly #bus: ChangeBus;
  readonly #log: ChangeLog;
  readonly #position: () => number | null;
  readonly #pollMs: number | false;
  readonly #onError: (err: unknown) => void;
  readonly #listeners = new Set<FeedListener>();
  #unsubscribe: (() => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  /** Another read is owed after the running one (it may have started before the write). */
  #again = false;
  /** A heartbeat to pass on after the next successful read. */
  #beatOwed = false;

  constructor(opts: LoggedFeedOptions) {
    this.#bus = opts.bus;
    this.#log = opts.log;
    this.#position = opts.position;
    this.#pollMs = opts.pollMs ?? 1000;
    this.#onError = opts.onError ?? (() => {});
  }

  subscribe(listener: FeedListener): () => void {
    this.#listeners.add(listener);
    if (!this.#unsubscribe) {
      this.#unsubscribe = this.#bus.subscribe({
        onMessage: () => this.catchUp(),
        onStatus: (status) => this.#onStatus(status),
      });
      if (this.#pollMs !== false) {
        this.#timer = setInterval(() => void this.catchUp(), this.#pollMs);
        this.#timer.unref();
      }
    }
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) {
        clearInterval(this.#timer);
        this.#timer = undefined;
        this.#unsubscribe?.();
        this.#unsubscribe = undefined;
      }
    };
  }

  /**
   * Reads the log after the follower's version and delivers what it holds; resolves when done.
   * Calls while a read runs are folded into one more read after it.
   */
  catchUp(opts: { heartbeat?: boolean } = {}): Promise<void> {
    if (opts.heartbeat) this.#beatOwed = true;
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      try {
        do {
          this.#again = false;
          await this.#readOnce();
        } while (this.#again);
      } finally {
        this.#running = undefined;
      }
    })();
    return this.#running;
  }

  #onStatus(status: BusStatus): void {
    switch (status) {
      case "connected":
      case "disconnected":
        this.#report(status);
        break;
      case "heartbeat":
        void this.catchUp({ heartbeat: true });
        break;
      case "gap":
        // An unreadable message on the channel is garbage or a forgery: reading the log is enough.
        void this.catchUp();
        break;
    }
  }

  async #readOnce(): Promise<void> {
    const position = this.#position();
    if (position === null) {
      // Not loaded yet: the follower reloads on a gap.
      this.#report("gap");
      return;
    }
    const beat = this.#beatOwed;
    this.#beatOwed = false;
    let read: Awaited<ReturnType<ChangeLog["since"]>>;
    try {
      read = await this.#log.since(position);
    } catch (err) {
      // Postgres unreachable: no heartbeat passes, so the follower goes stale and fails closed.
      this.#onError(err);
      return;
    }
    const messages: ChangeMessage[] = [];
    for (const row of read.changes) {
      const msg = decodeLoggedChange(row);
      if (!msg) {
        this.#onError(new Error(`policy change ${row.version} is unreadable; reloading`));
        this.#report("gap");
        return;
      }
      messages.push(msg);
    }
    for (const msg of messages) for (const l of [...this.#listeners]) l.onMessage(msg);
    const reached = messages.at(-1)?.version ?? position;
    // Rows missing (a write that logged nothing, or more than one page behind): reload in full.
    if (reached < read.stored) this.#report("gap");
    if (beat) this.#report("heartbeat");
  }

  #report(status: BusStatus): void {
    for (const l of [...this.#listeners]) {
      try {
        l.onStatus(status);
      } catch (err) {
        this.#onError(err);
      }
    }
  }
}
