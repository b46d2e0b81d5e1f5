import { Cluster, Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { createRedisClient, isCluster, taggedKey } from "./redis-client.ts";

describe("createRedisClient", () => {
  it("gives a single-node client for redis:// and a cluster client for redis+cluster://", () => {
    const single = createRedisClient("redis://127.0.0.1:1", { lazyConnect: true });
    const cluster = createRedisClient("redis+cluster://gw:s%3Acret@127.0.0.1:1,127.0.0.1:2", {
      lazyConnect: true,
      connectionName: "x",
    });
    try {
      expect(single).toBeInstanceOf(Redis);
      expect(isCluster(single)).toBe(false);
      expect(cluster).toBeInstanceOf(Cluster);
      expect(isCluster(cluster)).toBe(true);
      const c = cluster as Cluster;
      expect((c as unknown as { startupNodes: unknown }).startupNodes).toEqual([
        { host: "127.0.0.1", port: 1 },
        { host: "127.0.0.1", port: 2 },
      ]);
      // Fail fast as on one Redis: no queue while the cluster is down, a command timeout, masters only.
      expect(c.options).toMatchObject({ enableOfflineQueue: false, scaleReads: "master", lazyConnect: true });
      expect(c.options.redisOptions).toMatchObject({
        username: "gw",
        password: "s:cret",
        commandTimeout: 1000,
        maxRetriesPerRequest: 0,
        connectionName: "x",
      });
      expect(c.options.redisOptions).not.toHaveProperty("tls");
    } finally {
      single.disconnect();
      cluster.disconnect();
    }
  });

  it("uses TLS on every node for rediss+cluster://", () => {
    const c = createRedisClient("rediss+cluster://a.example:7001", { lazyConnect: true }) as Cluster;
    try {
      expect(c.options.redisOptions).toHaveProperty("tls");
    } finally {
      c.disconnect();
    }
  });

  it("refuses a malformed URL without repeating it", () => {
    expect(() => createRedisClient("redis+cluster://:hunter2@a")).toThrow(/host and a port/);
    expect(() => createRedisClient("redis+cluster://:hunter2@a")).not.toThrow(/hunter2/);
  });
});

describe("taggedKey", () => {
  it("keeps the prefix first and tags the name, so one name's keys share a slot", () => {
    expect(taggedKey("phaselock:rl:", "rl:link:lnk_1")).toBe("phaselock:rl:{rl:link:lnk_1}");
    expect(taggedKey("phaselock:rq:", "rq:link:lnk_1", ":4397")).toBe("phaselock:rq:{rq:link:lnk_1}:4397");
  });

  it("never merges two names into one key, whatever braces they hold", () => {
    const names = ["a", "a}", "{a", "a}b", "a_b", "}"];
    expect(new Set(names.map((n) => taggedKey("p:", n))).size).toBe(names.length);
  });

  it("refuses an empty name (an empty tag would hash the whole key) and a prefix with a brace", () => {
    expect(() => taggedKey("p:", "")).toThrow(TypeError);
    expect(() => taggedKey("p{x}:", "a")).toThrow(TypeError);
  });
});
