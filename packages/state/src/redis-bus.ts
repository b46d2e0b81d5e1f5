import { randomUUID } from "node:crypto";
import { Redis, type RedisOptions } from "ioredis";
import type { BusListener, BusStatus, ChangeBus } from "./bus.ts";
import { type ChangeHint, decodeHint, encodeHint } from "./changes.ts";

/**
 * Heartbeat intervals without our own heartbeat coming back, while connected, after which both
 * connections are started over: a half-open socket can look connected to ioredis for minutes.
 */
const MISSED_HEARTBEATS_BEFORE_RECONNECT = 5;

/** Longest pause between reconnection attempts. */
const MAX_RETRY_DELAY_MS = 2000;

/** Reconnects forever with exponential backoff capped at {@link MAX_RETRY_DELAY_MS}. */
export const retryForever = (times: number): number =>
  Math.min(50 * 2 ** Math.min(times, 16), MAX_RETRY_DELAY_MS);

/**
 * A Redis client configured for a fail-closed service: reconnects forever, but a command issued
 * while the connection is down (or that does not answer within `commandTimeout`) rejects at once
 * instead of waiting in a queue, so a request that needs Redis can answer 503 promptly.
 */
export function createRedisClient(url: string, overrides: RedisOptions = {}): Redis {
  return new Redis(url, {
    retryStrategy: retryForever,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: 1000,
    ...overrides,
  });
}

export type RedisRole = "publisher" | "subscriber";

export interface RedisBusOptions {
  /** Used with {@link createRedisClient} when no `createClient` is given. */
  url?: string;
  /**
   * Builds the bus's two connections; the bus owns and closes them. The publisher should have
   * `enableOfflineQueue: false` so a publish fails fast while Redis is down.
   */
  createClient?: (role: RedisRole) => Redis;
  /** Prefix of the channel names; default `phaselock:`. */
  prefix?: string;
  /** How often the bus proves the pub/sub round trip; default 1000 ms. */
  heartbeatMs?: number;
  /** Errors the bus cannot throw to anyone: a failing listener, a failed resubscribe. */
  onError?: (err: unknown) => void;
}

/**
 * Change feed over Redis pub/sub: messages on `<prefix>changes`, heartbeats on
 * `<prefix>heartbeat`. A dedicated subscriber connection listens to both; the bus reports
 * `heartbeat` only when its own nonce comes back, which proves publish and subscribe both work.
 * When they stop coming back while the connection looks up, it reconnects both connections.
 */
export class RedisBus implements ChangeBus {
  readonly #changes: string;
  readonly #heartbeat: string;
  readonly #heartbeatMs: number;
  readonly #nonce = randomUUID();
  readonly #createClient: (role: RedisRole) => Redis;
  readonly #onError: (err: unknown) => void;
  readonly #listeners = new Set<BusListener>();
  readonly #pub: Redis;
  #sub: Redis | undefined;
  #timer: NodeJS.Timeout | undefined;
  #link: "unknown" | "up" | "down" = "unknown";
  /** Heartbeat ticks since our own heartbeat last came back (or since connecting). */
  #missed = 0;
  #closed = false;

  constructor(opts: RedisBusOptions) {
    const { url, createClient } = opts;
    if (!createClient && !url) throw new TypeError("RedisBus needs a url or a createClient factory");
    this.#createClient =
      createClient ??
      ((role) =>
        createRedisClient(url!, {
          connectionName: `phaselock-bus-${role}`,
          // Subscribing again after a reconnect is done by hand (see #resubscribe).
          ...(role === "subscriber" ? { autoResubscribe: false, enableOfflineQueue: true } : {}),
        }));
    const prefix = opts.prefix ?? "phaselock:";
    this.#changes = `${prefix}changes`;
    this.#heartbeat = `${prefix}heartbeat`;
    this.#heartbeatMs = opts.heartbeatMs ?? 1000;
    this.#onError = opts.onError ?? (() => {});
    this.#pub = this.#createClient("publisher");
    // Connection errors surface through the heartbeat; without a listener ioredis logs each one.
    this.#pub.on("error", () => {});
  }

  async publish(hint: ChangeHint): Promise<void> {
    if (this.#closed) throw new Error("change bus is closed");
    if (!decodeHint(encodeHint(hint))) throw new TypeError("malformed change hint");
    await this.#pub.publish(this.#changes, encodeHint(hint));
  }

  subscribe(listener: BusListener): () => void {
    if (this.#closed) throw new Error("change bus is closed");
    this.#listeners.add(listener);
    if (!this.#sub) this.#startSubscriber();
    else if (this.#link === "up") this.#notify(listener, "connected");
    return () => {
      this.#listeners.delete(listener);
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#report("disconnected");
    this.#listeners.clear();
    await Promise.all([shutdown(this.#pub), this.#sub ? shutdown(this.#sub) : undefined]);
  }

  #startSubscriber(): void {
    const sub = this.#createClient("subscriber");
    this.#sub = sub;
    sub.on("ready", () => this.#resubscribe(sub));
    sub.on("close", () => this.#report("disconnected"));
    sub.on("error", () => this.#report("disconnected"));
    sub.on("message", (channel: string, message: string) => this.#onRedisMessage(channel, message));
    // A client from a factory may already be connected, in which case no "ready" follows.
    if (sub.status === "ready") this.#resubscribe(sub);
    this.#timer = setInterval(() => this.#tick(), this.#heartbeatMs);
    this.#timer.unref();
  }

  #resubscribe(sub: Redis): void {
    sub.subscribe(this.#changes, this.#heartbeat).then(
      () => {
        if (this.#closed || sub.status !== "ready") return;
        this.#report("connected");
        this.#sendHeartbeat();
      },
      (err: unknown) => {
        if (this.#closed) return;
        this.#onError(err);
        this.#report("disconnected");
        // Start over on a fresh connection rather than run without a subscription.
        sub.disconnect(true);
      },
    );
  }

  #tick(): void {
    if (this.#closed) return;
    if (this.#link === "up" && ++this.#missed > MISSED_HEARTBEATS_BEFORE_RECONNECT) {
      this.#missed = 0;
      this.#onError(new Error("change feed heartbeats stopped coming back; reconnecting"));
      this.#pub.disconnect(true);
      this.#sub?.disconnect(true);
    }
    this.#sendHeartbeat();
  }

  #sendHeartbeat(): void {
    if (this.#closed) return;
    this.#pub.publish(this.#heartbeat, this.#nonce).catch(() => {
      // The missing heartbeat is the signal; the subscriber side reports the outage.
    });
  }

  #onRedisMessage(channel: string, message: string): void {
    if (this.#closed) return;
    if (channel === this.#heartbeat) {
      if (message === this.#nonce && this.#link === "up") {
        this.#missed = 0;
        this.#report("heartbeat");
      }
      return;
    }
    if (channel !== this.#changes) return;
    const msg = decodeHint(message);
    if (!msg) {
      this.#report("gap");
      return;
    }
    for (const l of [...this.#listeners]) {
      try {
        Promise.resolve(l.onMessage(msg)).catch((err: unknown) => this.#onError(err));
      } catch (err) {
        this.#onError(err);
      }
    }
  }

  #report(status: BusStatus): void {
    if (status === "connected") {
      this.#link = "up";
      this.#missed = 0;
    }
    if (status === "disconnected") {
      // Once per outage, not once per failed reconnection attempt.
      if (this.#link === "down") return;
      this.#link = "down";
    }
    for (const l of [...this.#listeners]) this.#notify(l, status);
  }

  #notify(listener: BusListener, status: BusStatus): void {
    try {
      listener.onStatus(status);
    } catch (err) {
      this.#onError(err);
    }
  }
}

async function shutdown(client: Redis): Promise<void> {
  if (client.status === "ready") {
    try {
      await client.quit();
      return;
    } catch {
      // fall through: drop the connection instead
    }
  }
  client.disconnect();
}
