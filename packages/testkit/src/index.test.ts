import { parseRedisUrl } from "@phaselock/core";
import { Cluster, Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import {
  describeIntegration,
  integrationMode,
  pgAvailable,
  redisAvailable,
  redisClusterAvailable,
  services,
  TEST_REDIS_CLUSTER_URL,
  TEST_REDIS_URL,
  uniquePrefix,
} from "./index.ts";

describe("integrationMode", () => {
  const up = { postgres: true, redis: true, "redis-cluster": true };
  const pgDown = { postgres: false, redis: true, "redis-cluster": true };
  const noCluster = { postgres: true, redis: true, "redis-cluster": false };
  it.each([
    { needs: ["postgres", "redis"] as const, available: up, ci: true, mode: "run", missing: [] },
    { needs: ["postgres"] as const, available: pgDown, ci: false, mode: "skip", missing: ["postgres"] },
    {
      needs: ["postgres", "redis"] as const,
      available: pgDown,
      ci: true,
      mode: "fail",
      missing: ["postgres"],
    },
    { needs: ["redis"] as const, available: pgDown, ci: true, mode: "run", missing: [] },
    {
      needs: [] as const,
      available: { postgres: false, redis: false, "redis-cluster": false },
      ci: true,
      mode: "run",
      missing: [],
    },
    {
      needs: ["redis-cluster"] as const,
      available: noCluster,
      ci: false,
      mode: "skip",
      missing: ["redis-cluster"],
    },
    {
      needs: ["redis-cluster"] as const,
      available: noCluster,
      ci: true,
      mode: "fail",
      missing: ["redis-cluster"],
    },
  ])("$needs with $available, CI=$ci -> $mode", ({ needs, available, ci, mode, missing }) => {
    expect(integrationMode(needs, available, ci)).toEqual({ mode, missing });
  });
});

describe("probes", () => {
  it("answer false quickly when nothing listens", async () => {
    const started = Date.now();
    expect(await pgAvailable("postgres://postgres@127.0.0.1:1/test")).toBe(false);
    expect(await redisAvailable("redis://127.0.0.1:1")).toBe(false);
    expect(await redisClusterAvailable("redis+cluster://127.0.0.1:1,127.0.0.1:2")).toBe(false);
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it("report every service", () => {
    expect(Object.keys(services).sort()).toEqual(["postgres", "redis", "redis-cluster"]);
  });

  it("take a single Redis for no cluster", async () => {
    expect(await redisClusterAvailable(TEST_REDIS_URL)).toBe(false);
  });
});

describe("uniquePrefix", () => {
  it("is unique and namespaced", () => {
    const a = uniquePrefix();
    expect(a).toMatch(/^pl:test:[0-9a-f]{12}:$/);
    expect(uniquePrefix()).not.toBe(a);
    expect(uniquePrefix("rate")).toMatch(/^pl:rate:/);
  });
});

describeIntegration("TEST_REDIS_URL", ["redis"], () => {
  it("is reachable and prefixes keep test files apart", async () => {
    const redis = new Redis(TEST_REDIS_URL);
    const prefix = uniquePrefix();
    try {
      await redis.set(`${prefix}k`, "v", "EX", 60);
      expect(await redis.get(`${prefix}k`)).toBe("v");
      expect(await redis.get(`${uniquePrefix()}k`)).toBeNull();
    } finally {
      await redis.del(`${prefix}k`);
      await redis.quit();
    }
  });
});

describeIntegration("TEST_REDIS_CLUSTER_URL", ["redis-cluster"], () => {
  it("names a healthy cluster of three masters", async () => {
    const { nodes: seeds } = parseRedisUrl(TEST_REDIS_CLUSTER_URL) as {
      nodes: { host: string; port: number }[];
    };
    const cluster = new Cluster(seeds);
    try {
      const nodes = String(await cluster.call("CLUSTER", "NODES"));
      expect(nodes.split("\n").filter((l) => l.includes("master")).length).toBe(3);
    } finally {
      cluster.disconnect();
    }
  });
});
