/**
 * Redis connections: one Redis or a Redis Cluster, as `REDIS_URL` names it, and key names that
 * keep one limiter's keys on one cluster slot.
 */
import { parseRedisUrl } from "@phaselock/core";
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from "ioredis";

/** Longest pause between reconnection attempts. */
const MAX_RETRY_DELAY_MS = 2000;

/** Reconnects forever with exponential backoff capped at {@link MAX_RETRY_DELAY_MS}. */
export const retryForever = (times: number): number =>
  Math.min(50 * 2 ** Math.min(times, 16), MAX_RETRY_DELAY_MS);

/** One Redis or a Redis Cluster, as `REDIS_URL` names it (see `parseRedisUrl`). */
export type RedisClient = Redis | Cluster;

/** True for a client of a Redis Cluster: channels are sharded and keys hash-tagged. */
export const isCluster = (client: RedisClient): client is Cluster => client instanceof Cluster;

/** Options only a cluster client takes (e.g. `shardedSubscribers`, `natMap`). */
export type ClusterOverrides = Omit<ClusterOptions, "redisOptions">;

/**
 * A Redis client configured for a fail-closed service: reconnects forever, but a command issued
 * while the connection is down (or that does not answer within `commandTimeout`) rejects at once
 * instead of waiting in a queue, so a request that needs Redis can answer 503 promptly.
 *
 * A `redis+cluster://` URL gives a {@link Cluster} client seeded with its nodes; `overrides` then
 * apply to every node connection where ioredis allows (`enableOfflineQueue`, `lazyConnect` and
 * the retry strategy are the cluster's own), and `cluster` to the cluster client.
 */
export function createRedisClient(
  url: string,
  overrides: RedisOptions = {},
  cluster: ClusterOverrides = {},
): RedisClient {
  const target = parseRedisUrl(url);
  const options: RedisOptions = {
    retryStrategy: retryForever,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: 1000,
    ...overrides,
  };
  if (target.kind === "single") return new Redis(url, options);
  const { retryStrategy, enableOfflineQueue, lazyConnect, readOnly: _, ...node } = options;
  const client = new Cluster(target.nodes, {
    clusterRetryStrategy: (times) => retryStrategy?.(times) ?? null,
    enableOfflineQueue,
    lazyConnect,
    // Writes and scripts go to masters; a replica's answer may lag a limit behind.
    scaleReads: "master",
    // A cluster that is down (a master lost, no replica) answers CLUSTERDOWN: try a few times
    // within about a second, then fail like a single Redis would.
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    maxRedirections: 10,
    ...cluster,
    redisOptions: {
      ...node,
      ...(target.username === undefined ? {} : { username: target.username }),
      ...(target.password === undefined ? {} : { password: target.password }),
      ...(target.tls ? { tls: {} } : {}),
    },
  });
  if (!cluster.shardedSubscribers) {
    // Node connections open on first use, and a command that meets one still opening is retried
    // on another node and MOVED back, late and out of order: open the masters' as soon as the
    // cluster's shape is known (again after every reconnect).
    client.on("ready", () => {
      for (const n of client.nodes("master")) if (n.status === "wait") n.connect().catch(() => {});
    });
  }
  return client;
}

/**
 * The store's readiness probe (`/readyz`): PING on one Redis. On a Cluster every master must
 * answer and the cluster must say it serves keys, since a node answers PING while the cluster
 * refuses every key (CLUSTERDOWN, a master lost with no replica) and one node's PONG says nothing
 * of the masters holding other slots.
 */
export async function pingRedis(redis: RedisClient): Promise<void> {
  if (!isCluster(redis)) {
    await redis.ping();
    return;
  }
  const masters = redis.nodes("master");
  if (masters.length === 0) throw new Error("Redis Cluster: no master known yet");
  await Promise.all(masters.map((n) => n.ping()));
  const info = String(await masters[0]!.cluster("INFO"));
  if (!/^cluster_state:ok\b/m.test(info)) throw new Error("Redis Cluster is down (cluster_state is not ok)");
}

/**
 * The key for `name` under `prefix`, hash-tagged (`<prefix>{<name>}`) so that everything kept for
 * one name — a limiter's state, a quota's windows — hashes to one Redis Cluster slot and a script
 * over several of them never fails with CROSSSLOT. On a single Redis the tag is just part of the
 * name. The key still starts with the prefix, so `SCAN MATCH <prefix>*` and ACL key patterns
 * (`~<prefix>*`) cover it.
 */
export function taggedKey(prefix: string, name: string, suffix = ""): string {
  // Redis hashes what lies between the first "{" and the next "}". The prefix has no brace, so
  // the first is ours; a "}" inside `name` ends the tag early, but always at the same place for
  // the same name, so one name's keys still share a slot (and distinct names stay distinct keys).
  // An empty tag would hash the whole key instead.
  if (prefix.includes("{") || name === "") throw new TypeError("a key needs a brace-free prefix and a name");
  return `${prefix}{${name}}${suffix}`;
}
