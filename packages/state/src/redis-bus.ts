import { randomUUID } from "node:crypto";
import type { BusListener, BusStatus, ChangeBus } from "./bus.ts";
import { type ChangeHint, decodeHint, encodeHint } from "./changes.ts";
import { createRedisClient, isCluster, type RedisClient, taggedKey } from "./redis-client.ts";

/**
 * Heartbeat intervals without our own heartbeat coming back, while connected, after which both
 * connections are started over: a half-open socket can look connected to ioredis for minutes.
 */
const MISSED_HEARTBEATS_BEFORE_RECONNECT = 5;

export type RedisRole = "publisher" | "subscriber";

export interface RedisBusOptions {
  /** Used with {@link createRedisClient} when no `createClient` is given. */
  url?: string;
  /**
   * Builds the bus's two connections; the bus owns and closes them. The publisher should have
   * `enableOfflineQueue: false` so a publish fails fast while Redis is down.
   */
  createClient?: (role: RedisRole) => RedisClient;
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
 *
 * On a Redis Cluster the feed uses sharded pub/sub (SPUBLISH/SSUBSCRIBE), so a message travels
 * within one shard instead of being broadcast over the cluster bus to every node. Both channels
 * carry one hash tag, `<prefix>{feed}:changes` and `<prefix>{feed}:heartbeat`: they live on the
 * same shard, so a heartbeat coming back proves the path a change takes too.
 */
export class RedisBus implements ChangeBus {
  readonly #changes: string;
  readonly #heartbeat: string;
  readonly #heartbeatMs: number;
  readonly #nonce = randomUUID();
  readonly #createClient: (role: RedisRole) => RedisClient;
  readonly #onError: (err: unknown) => void;
  readonly #listeners = new Set<BusListener>();
  readonly #pub: RedisClient;
  readonly #sharded: boolean;
  #sub: RedisClient | undefined;
  #resubscribing = false;
  /** Shard subscriptions that failed in a row (see #resubscribe). */
  #failedResubscribes = 0;
  /** The last publish on a cluster; the next waits for it (see `publish`). */
  #inOrder: Promise<unknown> = Promise.resolve();
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
        createRedisClient(
          url!,
          {
            connectionName: `phaselock-bus-${role}`,
            // Subscribing again after a reconnect is done by hand (see #resubscribe).
            ...(role === "subscriber" ? { autoResubscribe: false, enableOfflineQueue: true } : {}),
          },
          // One subscriber connection per master, to the shard that holds the feed's slot.
          role === "subscriber" ? { shardedSubscribers: true } : {},
        ));
    const prefix = opts.prefix ?? "phaselock:";
    this.#heartbeatMs = opts.heartbeatMs ?? 1000;
    this.#onError = opts.onError ?? (() => {});
    this.#pub = this.#createClient("publisher");
    this.#sharded = isCluster(this.#pub);
    this.#changes = this.#sharded ? taggedKey(prefix, "feed", ":changes") : `${prefix}changes`;
    this.#heartbeat = this.#sharded ? taggedKey(prefix, "feed", ":heartbeat") : `${prefix}heartbeat`;
    // Connection errors surface through the heartbeat; without a listener ioredis logs each one.
    this.#pub.on("error", () => {});
  }

  async publish(hint: ChangeHint): Promise<void> {
    if (this.#closed) throw new Error("change bus is closed");
    if (!decodeHint(encodeHint(hint))) throw new TypeError("malformed change hint");
    if (!this.#sharded) {
      await this.#send(this.#changes, encodeHint(hint));
      return;
    }
    // A cluster client retries a command that met a connection still opening on another node,
    // which gets MOVED back: concurrent publishes could arrive out of order. One at a time.
    const sent = this.#inOrder.then(() => this.#send(this.#changes, encodeHint(hint)));
    this.#inOrder = sent.catch(() => {});
    await sent;
  }

  /** The channel names, for tests and operators: `{ changes, heartbeat }`. */
  get channels(): { changes: string; heartbeat: string } {
    return { changes: this.#changes, heartbeat: this.#heartbeat };
  }

  #send(channel: string, message: string): Promise<unknown> {
    return this.#sharded ? this.#pub.spublish(channel, message) : this.#pub.publish(channel, message);
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
    this.#openSubscriber();
    this.#timer = setInterval(() => this.#tick(), this.#heartbeatMs);
    this.#timer.unref();
  }

  #openSubscriber(): void {
    const sub = this.#createClient("subscriber");
    this.#sub = sub;
    // Events of a subscriber this bus has replaced are ignored.
    const current = () => this.#sub === sub && !this.#closed;
    sub.on("ready", () => current() && this.#resubscribe(sub));
    sub.on("close", () => current() && this.#report("disconnected"));
    sub.on("error", () => current() && this.#report("disconnected"));
    const onMessage = (channel: string, message: string) =>
      current() && this.#onRedisMessage(channel, message);
    sub.on(this.#sharded ? "smessage" : "message", onMessage);
    if (this.#sharded) {
      // A cluster client replaces a lost shard subscriber by itself, staying `ready`, and
      // messages sent meanwhile are gone: report the outage, and subscribe again (which reports
      // `connected`, so subscribers reload) once its subscribers are back.
      sub.on("-node", () => current() && this.#report("disconnected"));
      sub.on("-subscriber", () => current() && this.#report("disconnected"));
      sub.on("subscribersReady", () => {
        if (current() && this.#link === "down") this.#resubscribe(sub);
      });
    }
    // A client from a factory may already be connected, in which case no "ready" follows.
    if (sub.status === "ready") this.#resubscribe(sub);
  }

  /**
   * Starts the subscriber over. One Redis reconnects its own connection. A cluster client is
   * replaced by a new one: after a failover, a reconnecting cluster client can place its shard
   * subscribers on the slot map it had before the failover and never find the new master.
   */
  #restartSubscriber(): void {
    const old = this.#sub;
    if (!old) return;
    if (!this.#sharded) {
      old.disconnect(true);
      return;
    }
    this.#report("disconnected");
    this.#resubscribing = false;
    this.#openSubscriber();
    old.removeAllListeners();
    old.on("error", () => {});
    old.disconnect();
  }

  #resubscribe(sub: RedisClient): void {
    this.#resubscribing = true;
    const channels = [this.#changes, this.#heartbeat];
    const subscribed = this.#sharded
      ? // ioredis keeps a cluster's shard channels to resubscribe them after a topology change and
        // appends on every SSUBSCRIBE: drop ours first so the list stays two channels long.
        sub
          .sunsubscribe(...channels)
          .catch(() => {})
          .then(() => sub.ssubscribe(...channels))
      : sub.subscribe(...channels);
    subscribed.then(
      () => {
        if (this.#sub !== sub) return;
        this.#resubscribing = false;
        this.#failedResubscribes = 0;
        if (this.#closed || sub.status !== "ready") return;
        this.#report("connected");
        this.#sendHeartbeat();
      },
      (err: unknown) => {
        if (this.#sub !== sub) return;
        this.#resubscribing = false;
        if (this.#closed) return;
        this.#onError(err);
        this.#report("disconnected");
        // Start over on a fresh connection rather than run without a subscription. A cluster
        // client, though, may just not have placed its shard subscribers on the new slot map yet
        // (right after a failover or a reconnect): starting over then only restarts that race.
        // The next ticks try again; only a subscription that keeps failing starts over.
        if (!this.#sharded || ++this.#failedResubscribes >= MISSED_HEARTBEATS_BEFORE_RECONNECT) {
          this.#failedResubscribes = 0;
          this.#restartSubscriber();
        }
      },
    );
  }

  #tick(): void {
    if (this.#closed) return;
    // A cluster client stays `ready` while one of its nodes is lost, so no "ready" follows the
    // outage: subscribe again from here until it works.
    if (this.#link === "down" && !this.#resubscribing && this.#sub?.status === "ready")
      this.#resubscribe(this.#sub);
    if (this.#link === "up" && ++this.#missed > MISSED_HEARTBEATS_BEFORE_RECONNECT) {
      this.#missed = 0;
      this.#onError(new Error("change feed heartbeats stopped coming back; reconnecting"));
      this.#pub.disconnect(true);
      this.#restartSubscriber();
    }
    this.#sendHeartbeat();
  }

  #sendHeartbeat(): void {
    if (this.#closed) return;
    this.#send(this.#heartbeat, this.#nonce).catch(() => {
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

async function shutdown(client: RedisClient): Promise<void> {
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
