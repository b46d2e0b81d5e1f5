/**
 * Reachability probes for Postgres and Redis, without vitest: the bench suite uses them too.
 */
import { parseRedisUrl } from "@phaselock/core";
import { Cluster, Redis } from "ioredis";
import postgres from "postgres";

const PROBE_TIMEOUT_MS = 2_000;

const withTimeout = <T>(p: Promise<T>, ms: number): Promise<T> =>
  new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });

/** True when `select 1` answers on `url` within two seconds. */
export async function pgAvailable(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, connect_timeout: PROBE_TIMEOUT_MS / 1000, onnotice: () => {} });
  try {
    await withTimeout(sql`select 1`, PROBE_TIMEOUT_MS);
    return true;
  } catch {
    return false;
  } finally {
    await sql.end({ timeout: 0 }).catch(() => {});
  }
}

/** True when `PING` answers on `url` within two seconds. */
export async function redisAvailable(url: string): Promise<boolean> {
  const redis = new Redis(url, {
    lazyConnect: true,
    connectTimeout: PROBE_TIMEOUT_MS,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  redis.on("error", () => {});
  try {
    await withTimeout(
      redis.connect().then(() => redis.ping()),
      PROBE_TIMEOUT_MS,
    );
    return true;
  } catch {
    return false;
  } finally {
    redis.disconnect();
  }
}

/**
 * True when `url` (`redis+cluster://…`) names a Redis Cluster whose seed nodes answer and report
 * `cluster_state:ok`, within two seconds.
 */
export async function redisClusterAvailable(url: string): Promise<boolean> {
  let target: ReturnType<typeof parseRedisUrl>;
  try {
    target = parseRedisUrl(url);
  } catch {
    return false;
  }
  if (target.kind !== "cluster") return false;
  const cluster = new Cluster(target.nodes, {
    lazyConnect: true,
    enableOfflineQueue: false,
    clusterRetryStrategy: () => null,
    redisOptions: {
      connectTimeout: PROBE_TIMEOUT_MS,
      maxRetriesPerRequest: 0,
      ...(target.username ? { username: target.username } : {}),
      ...(target.password ? { password: target.password } : {}),
      ...(target.tls ? { tls: {} } : {}),
    },
  });
  cluster.on("error", () => {});
  try {
    const info = await withTimeout(
      cluster.connect().then(() => cluster.cluster("INFO")),
      PROBE_TIMEOUT_MS,
    );
    return String(info).includes("cluster_state:ok");
  } catch {
    return false;
  } finally {
    cluster.disconnect();
  }
}
