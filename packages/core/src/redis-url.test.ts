import { describe, expect, it } from "vitest";
import { z } from "zod";
import { parseEnv, redisUrl } from "./env.ts";
import { parseRedisUrl } from "./redis-url.ts";

describe("REDIS_URL", () => {
  it("names one Redis with redis:// or rediss://, passed to the client as written", () => {
    expect(parseRedisUrl("redis://cache:6379")).toEqual({ kind: "single", url: "redis://cache:6379" });
    expect(parseRedisUrl("rediss://:pw@cache:6380/2")).toEqual({
      kind: "single",
      url: "rediss://:pw@cache:6380/2",
    });
  });

  it("names a Redis Cluster by its seed nodes with redis+cluster://", () => {
    expect(parseRedisUrl("redis+cluster://10.0.0.1:7001,redis-b.internal:7002,[::1]:7003")).toEqual({
      kind: "cluster",
      nodes: [
        { host: "10.0.0.1", port: 7001 },
        { host: "redis-b.internal", port: 7002 },
        { host: "::1", port: 7003 },
      ],
      username: undefined,
      password: undefined,
      tls: false,
    });
  });

  it("takes TLS and credentials (percent-encoded) for every node", () => {
    expect(parseRedisUrl("rediss+cluster://gw:p%40ss%3Aw@a:7001,b:7001/")).toMatchObject({
      kind: "cluster",
      username: "gw",
      password: "p@ss:w",
      tls: true,
      nodes: [
        { host: "a", port: 7001 },
        { host: "b", port: 7001 },
      ],
    });
    expect(parseRedisUrl("redis+cluster://:secret@a:7001")).toMatchObject({
      username: undefined,
      password: "secret",
    });
  });

  it.each([
    ["another scheme", "http://a:7001"],
    ["a cluster scheme spelled differently", "redis-cluster://a:7001"],
    ["a seed node without a port", "redis+cluster://a:7001,b"],
    ["a port out of range", "redis+cluster://a:70010"],
    ["an empty node", "redis+cluster://a:7001,,b:7002"],
    ["a database (a cluster has only 0)", "redis+cluster://a:7001/1"],
    ["a query", "redis+cluster://a:7001?tls=true"],
    ["no nodes", "redis+cluster:///"],
    ["bad percent-encoding", "redis+cluster://u:%zz@a:7001"],
  ])("refuses %s, without echoing the URL", (_what, url) => {
    expect(() => parseRedisUrl(url)).toThrow();
    const schema = z.object({ REDIS_URL: redisUrl });
    let message = "";
    try {
      parseEnv(schema, { REDIS_URL: url });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/REDIS_URL/);
    expect(message).not.toContain(url);
    expect(message).not.toContain("%zz");
  });

  it("counts an empty value as unset (in-process store)", () => {
    const schema = z.object({ REDIS_URL: redisUrl });
    expect(parseEnv(schema, { REDIS_URL: " " }).REDIS_URL).toBeUndefined();
    expect(parseEnv(schema, { REDIS_URL: "redis+cluster://a:1" }).REDIS_URL).toBe("redis+cluster://a:1");
  });
});
