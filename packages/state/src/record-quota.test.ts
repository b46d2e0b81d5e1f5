import { FakeClock } from "@phaselock/core";
import { describeIntegration, REDIS_TARGETS, type Service, uniquePrefix } from "@phaselock/testkit";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { MemoryRecordQuota, type RecordQuota, RedisRecordQuota } from "./record-quota.ts";
import { createRedisClient, isCluster, type RedisClient, taggedKey } from "./redis-client.ts";

interface Backend {
  name: string;
  needs: Service[];
  setup(): Promise<void>;
  /** A quota that shares no keys with any other test. */
  make(): RecordQuota;
  teardown(): Promise<void>;
}

const backends: Backend[] = [
  {
    name: "memory",
    needs: [],
    setup: async () => {},
    make: () => new MemoryRecordQuota(),
    teardown: async () => {},
  },
  // The same contract on one Redis and on a Redis Cluster.
  ...REDIS_TARGETS.map((target): Backend => {
    let redis: RedisClient | undefined;
    return {
      name: target.name,
      needs: target.needs,
      setup: async () => {
        redis = createRedisClient(target.url, { enableOfflineQueue: true }, { enableOfflineQueue: true });
      },
      make: () => new RedisRecordQuota({ redis: redis!, prefix: uniquePrefix("rq") }),
      teardown: async () => {
        await redis?.quit();
      },
    };
  }),
];

const HOUR = 3_600_000;
const rule = { limit: 3, windowMs: HOUR };

for (const backend of backends) {
  describeIntegration(`RecordQuota contract (${backend.name})`, backend.needs, () => {
    let quota: RecordQuota;
    let clock: FakeClock;
    beforeAll(() => backend.setup());
    afterAll(() => backend.teardown());
    beforeEach(() => {
      quota = backend.make();
      clock = new FakeClock("2020-03-01T12:00:00Z"); // the start of an hour window
    });
    const admit = (recordId: string, key = "link-1", r = rule) => quota.admit(key, recordId, r, clock.now());

    it("admits up to `limit` distinct records, then refuses a new one", async () => {
      expect(await admit("m1")).toEqual({ allowed: true, count: 1 });
      expect(await admit("m2")).toEqual({ allowed: true, count: 2 });
      expect(await admit("m3")).toEqual({ allowed: true, count: 3 });
      expect(await admit("m4")).toEqual({ allowed: false, count: 3 });
    });

    it("counts without adding, per key and window", async () => {
      expect(await quota.count("link-1", rule, clock.now())).toBe(0);
      await admit("m1");
      await admit("m2");
      await admit("m2");
      expect(await quota.count("link-1", rule, clock.now())).toBe(2);
      expect(await quota.count("link-2", rule, clock.now())).toBe(0);
      clock.advance(rule.windowMs);
      expect(await quota.count("link-1", rule, clock.now())).toBe(0);
    });

    it("lets a record already counted be read again, even at the limit", async () => {
      for (const id of ["m1", "m2", "m3"]) await admit(id);
      expect(await admit("m2")).toEqual({ allowed: true, count: 3 });
      expect(await admit("m1")).toEqual({ allowed: true, count: 3 });
    });

    it("does not count a refused record", async () => {
      for (const id of ["m1", "m2", "m3"]) await admit(id);
      expect(await admit("m4")).toEqual({ allowed: false, count: 3 });
      expect(await admit("m4")).toEqual({ allowed: false, count: 3 });
    });

    it("starts a fresh count in the next fixed window", async () => {
      for (const id of ["m1", "m2", "m3"]) await admit(id);
      clock.advance(HOUR - 1);
      expect((await admit("m4")).allowed).toBe(false);
      clock.advance(1);
      expect(await admit("m4")).toEqual({ allowed: true, count: 1 });
      expect(await admit("m1")).toEqual({ allowed: true, count: 2 });
    });

    it("uses fixed windows: records at the end of one window do not count in the next", async () => {
      clock.advance(HOUR - 1000);
      for (const id of ["m1", "m2", "m3"]) await admit(id);
      clock.advance(1000);
      for (const id of ["m4", "m5", "m6"]) expect((await admit(id)).allowed).toBe(true);
      expect((await admit("m7")).allowed).toBe(false);
    });

    it("keeps keys apart", async () => {
      for (const id of ["m1", "m2", "m3"]) await admit(id, "a");
      expect((await admit("m4", "a")).allowed).toBe(false);
      expect(await admit("m4", "b")).toEqual({ allowed: true, count: 1 });
    });

    it("treats record ids as opaque strings", async () => {
      expect((await admit("m:1")).allowed).toBe(true);
      expect((await admit("m 1")).allowed).toBe(true);
      expect(await admit("m:1")).toEqual({ allowed: true, count: 2 });
    });

    it.each([
      { limit: 0, windowMs: HOUR },
      { limit: 3, windowMs: 0 },
      { limit: 2.5, windowMs: HOUR },
    ])("rejects the rule %o", async (bad) => {
      await expect(admit("m1", "k", bad)).rejects.toThrow(RangeError);
    });
  });
}

for (const target of REDIS_TARGETS)
  describeIntegration(`RedisRecordQuota (${target.name})`, target.needs, () => {
    let client: RedisClient;
    beforeAll(() => {
      client = createRedisClient(target.url, { enableOfflineQueue: true }, { enableOfflineQueue: true });
    });
    afterAll(() => client.quit());

    it("makes a window's set expire when the window ends by the caller's clock", async () => {
      const prefix = uniquePrefix("rq");
      const quota = new RedisRecordQuota({ redis: client, prefix });
      const now = new Date("2020-03-01T12:45:00Z"); // 15 minutes before the window ends
      await quota.admit("k", "m1", rule, now);
      const index = Math.floor(now.getTime() / HOUR);
      const ttl = await client.pttl(taggedKey(prefix, "k", `:${index}`));
      expect(ttl).toBeGreaterThan(15 * 60_000 - 5000);
      expect(ttl).toBeLessThanOrEqual(15 * 60_000);
    });

    it("keeps every window of one key on one cluster slot, under the prefix", async () => {
      const prefix = uniquePrefix("rq");
      const quota = new RedisRecordQuota({ redis: client, prefix });
      const now = new Date("2020-03-01T12:45:00Z");
      await quota.admit("rq:link:lnk_1", "m1", rule, now);
      await quota.admit("rq:link:lnk_1", "m1", rule, new Date(now.getTime() + HOUR));
      const index = Math.floor(now.getTime() / HOUR);
      const keys = [index, index + 1].map((i) => `${prefix}{rq:link:lnk_1}:${i}`);
      for (const k of keys) expect(await client.exists(k)).toBe(1);
      if (isCluster(client)) {
        const slots = await Promise.all(keys.map((k) => client.cluster("KEYSLOT", k)));
        expect(new Set(slots).size).toBe(1);
      }
    });

    it("throws, never allows, when Redis is unreachable", async () => {
      const down = createRedisClient(
        target.name === "redis" ? "redis://127.0.0.1:1" : "redis+cluster://127.0.0.1:1",
      );
      down.on("error", () => {});
      try {
        const quota = new RedisRecordQuota({ redis: down, prefix: uniquePrefix("rq") });
        const started = Date.now();
        await expect(quota.admit("k", "m1", rule, new Date())).rejects.toThrow();
        expect(Date.now() - started).toBeLessThan(1000);
      } finally {
        down.disconnect();
      }
    });
  });

describe("MemoryRecordQuota", () => {
  it("holds at most maxKeys, dropping ended windows first", async () => {
    const quota = new MemoryRecordQuota({ maxKeys: 50 });
    const clock = new FakeClock();
    for (let i = 0; i < 500; i++) {
      await quota.admit(`k${i}`, "m1", rule, clock.now());
      expect(quota.size).toBeLessThanOrEqual(50);
    }
    clock.advance(HOUR);
    for (let i = 0; i < 10; i++) await quota.admit(`fresh${i}`, "m1", rule, clock.now());
    expect(quota.size).toBeLessThan(50);
  });
});
