/**
 * Test helpers: service URLs and availability, integration suites that fail in CI and skip
 * locally when a service is down, and unique key prefixes. Nothing here is shared between test
 * files. A fresh database per test file is `@phaselock/db/testing`'s (testkit must not depend on
 * the database package, whose own tests use testkit).
 */
import { randomBytes } from "node:crypto";
import { beforeAll, describe } from "vitest";
import {
  pgAvailable as probePg,
  redisAvailable as probeRedis,
  redisClusterAvailable as probeRedisCluster,
} from "./probe.ts";

export { childOutput, lineSink } from "./lines.ts";
export { freePort } from "./ports.ts";
export { type PrivateRedisCluster, startPrivateRedisCluster } from "./redis-cluster.ts";
export { runRootScript } from "./root-script.ts";
export { TcpProxy, targetOf, viaProxy } from "./tcp-proxy.ts";

export const TEST_DATABASE_URL: string =
  process.env.TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test";
export const TEST_REDIS_URL: string = process.env.TEST_REDIS_URL || "redis://127.0.0.1:6379";
/**
 * A real Redis Cluster for the store contract tests (`.ci/run` starts three nodes on 7101–7103
 * with `scripts/redis-cluster.sh` and exports this; the default names the same nodes).
 */
export const TEST_REDIS_CLUSTER_URL: string =
  process.env.TEST_REDIS_CLUSTER_URL || "redis+cluster://127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103";

/** True when `select 1` answers on `url` within two seconds. */
export const pgAvailable = (url: string = TEST_DATABASE_URL): Promise<boolean> => probePg(url);
/** True when `PING` answers on `url` within two seconds. */
export const redisAvailable = (url: string = TEST_REDIS_URL): Promise<boolean> => probeRedis(url);
/** True when the cluster at `url` answers with `cluster_state:ok` within two seconds. */
export const redisClusterAvailable = (url: string = TEST_REDIS_CLUSTER_URL): Promise<boolean> =>
  probeRedisCluster(url);

export type Service = "postgres" | "redis" | "redis-cluster";
export type Services = Record<Service, boolean>;

/** Probes Postgres, Redis and the Redis Cluster at the test URLs, in parallel. */
export async function probeServices(): Promise<Services> {
  const [pg, redis, cluster] = await Promise.all([pgAvailable(), redisAvailable(), redisClusterAvailable()]);
  return { postgres: pg, redis, "redis-cluster": cluster };
}

/**
 * The Redis deployments a store contract test runs against: one Redis and a Redis Cluster. Each
 * names the service its suite needs, so a missing cluster skips locally and fails in CI.
 */
export const REDIS_TARGETS: ReadonlyArray<{ name: string; url: string; needs: Service[] }> = [
  { name: "redis", url: TEST_REDIS_URL, needs: ["redis"] },
  { name: "redis-cluster", url: TEST_REDIS_CLUSTER_URL, needs: ["redis-cluster"] },
];

/** What was reachable when this test file loaded testkit. */
export const services: Services = await probeServices();

const describeService = (s: Service): string =>
  s === "postgres"
    ? `Postgres (${redactUrl(TEST_DATABASE_URL)})`
    : s === "redis"
      ? `Redis (${redactUrl(TEST_REDIS_URL)})`
      : `Redis Cluster (${redactUrl(TEST_REDIS_CLUSTER_URL)}; start one with scripts/redis-cluster.sh)`;

/** What an integration suite does: run, skip (locally, a service is down) or fail (in CI). */
export function integrationMode(
  needs: readonly Service[],
  available: Services,
  ci: boolean,
): { mode: "run" | "skip" | "fail"; missing: Service[] } {
  const missing = needs.filter((s) => !available[s]);
  if (missing.length === 0) return { mode: "run", missing };
  return { mode: ci ? "fail" : "skip", missing };
}

/**
 * A `describe` that needs real services. When one is unreachable it is skipped locally, with a
 * warning, and FAILS in CI (`CI=true`): integration suites must never silently skip there.
 */
export function describeIntegration(name: string, needs: readonly Service[], fn: () => void): void {
  const { mode, missing } = integrationMode(needs, services, process.env.CI === "true");
  const what = missing.map(describeService).join(" and ");
  if (mode === "skip")
    console.warn(`[testkit] skipping "${name}": ${what} not reachable (with CI=true this fails)`);
  describe.skipIf(mode === "skip")(name, () => {
    if (mode === "fail") {
      beforeAll(() => {
        throw new Error(
          `"${name}" needs ${what}, which is not reachable; CI=true requires every integration suite to run`,
        );
      });
    }
    fn();
  });
}

function redactUrl(url: string): string {
  // A cluster URL lists several hosts, which URL cannot parse: drop the credentials by hand.
  if (/^rediss?\+cluster:\/\//.test(url)) return url.replace(/\/\/[^@/]*@/, "//***@");
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable url)";
  }
}

/** A unique Redis key prefix, e.g. `pl:test:3f9a…:`, so test files never see each other's keys. */
export const uniquePrefix = (label = "test"): string => `pl:${label}:${randomBytes(6).toString("hex")}:`;
