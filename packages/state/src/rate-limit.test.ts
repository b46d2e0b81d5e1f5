import { FakeClock } from "@phaselock/core";
import { describeIntegration, REDIS_TARGETS, type Service, uniquePrefix } from "@phaselock/testkit";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { MemoryRateLimiter, type RateLimiter, RedisRateLimiter } from "./rate-limit.ts";
import { createRedisClient, isCluster, type RedisClient, taggedKey } from "./redis-client.ts";

interface Backend {
  name: string;
  needs: Service[];
  setup(): Promise<void>;
  /** A limiter that shares no keys with any other test. */
  make(): RateLimiter;
  teardown(): Promise<void>;
}

const backends: Backend[] = [
  {
    name: "memory",
    needs: [],
    setup: async () => {},
    make: () => new MemoryRateLimiter(),
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
      make: () => new RedisRateLimiter({ redis: redis!, prefix: uniquePrefix("rl") }),
      teardown: async () => {
        await redis?.quit();
      },
    };
  }),
];

const rule = { limit: 5, windowMs: 1000 }; // one request per 200 ms, bursts of 5

for (const backend of backends) {
  describeIntegration(`RateLimiter contract (${backend.name})`, backend.needs, () => {
    let limiter: RateLimiter;
    let clock: FakeClock;
    beforeAll(() => backend.setup());
    afterAll(() => backend.teardown());
    beforeEach(() => {
      limiter = backend.make();
      clock = new FakeClock();
    });
    const consume = (key = "link-1", r = rule) => limiter.consume(key, r, clock.now());

    it("allows a burst of `limit`, counting down, then denies with the emission interval", async () => {
      for (let remaining = 4; remaining >= 0; remaining--) {
        expect(await consume()).toEqual({ allowed: true, remaining, retryAfterMs: 0 });
      }
      expect(await consume()).toEqual({ allowed: false, remaining: 0, retryAfterMs: 200 });
    });

    it("allows exactly one more request once retryAfterMs has passed", async () => {
      for (let i = 0; i < 5; i++) await consume();
      clock.advance(199);
      expect(await consume()).toMatchObject({ allowed: false, retryAfterMs: 1 });
      clock.advance(1);
      expect(await consume()).toEqual({ allowed: true, remaining: 0, retryAfterMs: 0 });
      expect(await consume()).toMatchObject({ allowed: false, retryAfterMs: 200 });
    });

    it("denied requests cost nothing: hammering does not push the wait back", async () => {
      for (let i = 0; i < 5; i++) await consume();
      for (let i = 0; i < 20; i++) expect((await consume()).allowed).toBe(false);
      clock.advance(200);
      expect((await consume()).allowed).toBe(true);
    });

    it("gives a full burst again after a quiet window", async () => {
      for (let i = 0; i < 5; i++) await consume();
      clock.advance(1000);
      expect(await consume()).toEqual({ allowed: true, remaining: 4, retryAfterMs: 0 });
    });

    it("refills gradually: after 400 ms two requests are back", async () => {
      for (let i = 0; i < 5; i++) await consume();
      clock.advance(400);
      expect(await consume()).toMatchObject({ allowed: true, remaining: 1 });
      expect(await consume()).toMatchObject({ allowed: true, remaining: 0 });
      expect((await consume()).allowed).toBe(false);
    });

    it("always allows a steady rate of one request per emission interval", async () => {
      for (let i = 0; i < 50; i++) {
        expect((await consume()).allowed).toBe(true);
        clock.advance(200);
      }
    });

    it("caps a sustained rate above the limit at `limit` per window", async () => {
      let allowed = 0;
      for (let i = 0; i < 100; i++) {
        if ((await consume()).allowed) allowed++;
        clock.advance(50); // 100 requests from 0 to 4950 ms, four times the rate
      }
      expect(allowed).toBe(5 + Math.floor(4950 / 200)); // the burst, then one per 200 ms
    });

    it("keeps keys apart", async () => {
      for (let i = 0; i < 5; i++) await consume("a");
      expect((await consume("a")).allowed).toBe(false);
      expect(await consume("b")).toMatchObject({ allowed: true, remaining: 4 });
    });

    it("handles an emission interval that is not a whole number of ms", async () => {
      const perMinute = { limit: 7, windowMs: 60_000 }; // 8571.43 ms apart
      for (let i = 0; i < 7; i++) expect((await consume("m", perMinute)).allowed).toBe(true);
      expect(await consume("m", perMinute)).toMatchObject({ allowed: false, retryAfterMs: 8572 });
      clock.advance(8571);
      expect(await consume("m", perMinute)).toMatchObject({ allowed: false, retryAfterMs: 1 });
      clock.advance(1);
      expect(await consume("m", perMinute)).toMatchObject({ allowed: true, remaining: 0 });
    });

    it("grants nothing when the clock steps back", async () => {
      for (let i = 0; i < 5; i++) await consume();
      clock.advance(-10_000);
      expect((await consume()).allowed).toBe(false);
      clock.advance(10_000 + 200);
      expect((await consume()).allowed).toBe(true);
      expect((await consume()).allowed).toBe(false);
    });

    it("treats a limit of 1 as one request per window", async () => {
      const once = { limit: 1, windowMs: 60_000 };
      expect(await consume("o", once)).toEqual({ allowed: true, remaining: 0, retryAfterMs: 0 });
      expect(await consume("o", once)).toEqual({ allowed: false, remaining: 0, retryAfterMs: 60_000 });
    });

    it.each([
      { limit: 0, windowMs: 1000 },
      { limit: 5, windowMs: 0 },
      { limit: 1.5, windowMs: 1000 },
      { limit: -1, windowMs: 1000 },
      { limit: Number.NaN, windowMs: 1000 },
    ])("rejects the rule %o", async (bad) => {
      await expect(consume("x", bad)).rejects.toThrow(RangeError);
    });
  });
}

for (const target of REDIS_TARGETS)
  describeIntegration(`RedisRateLimiter (${target.name})`, target.needs, () => {
    let client: RedisClient;
    beforeAll(() => {
      client = createRedisClient(target.url, { enableOfflineQueue: true }, { enableOfflineQueue: true });
    });
    afterAll(() => client.quit());

    it("sets the key to expire once its debt is paid off, measured from the caller's clock", async () => {
      const prefix = uniquePrefix("rl");
      const limiter = new RedisRateLimiter({ redis: client, prefix });
      const clock = new FakeClock();
      for (let i = 0; i < 3; i++) await limiter.consume("k", rule, clock.now());
      const ttl = await client.pttl(taggedKey(prefix, "k"));
      expect(ttl).toBeGreaterThan(500);
      expect(ttl).toBeLessThanOrEqual(600);
    });

    it("keeps a key under the prefix, hash-tagged to one cluster slot", async () => {
      const prefix = uniquePrefix("rl");
      const limiter = new RedisRateLimiter({ redis: client, prefix });
      await limiter.consume("rl:link:lnk_1", rule, new Date());
      expect(await client.exists(`${prefix}{rl:link:lnk_1}`)).toBe(1);
      if (isCluster(client)) {
        expect(await client.cluster("KEYSLOT", `${prefix}{rl:link:lnk_1}`)).toBe(
          await client.cluster("KEYSLOT", "rl:link:lnk_1"),
        );
      }
    });

    it("throws, never allows, when Redis is unreachable", async () => {
      const down = createRedisClient(
        target.name === "redis" ? "redis://127.0.0.1:1" : "redis+cluster://127.0.0.1:1",
      );
      down.on("error", () => {});
      try {
        const limiter = new RedisRateLimiter({ redis: down, prefix: uniquePrefix("rl") });
        const started = Date.now();
        await expect(limiter.consume("k", rule, new Date())).rejects.toThrow();
        expect(Date.now() - started).toBeLessThan(1000);
      } finally {
        down.disconnect();
      }
    });

    it("throws on an unexpected script reply", async () => {
      const fake = { defineCommand: () => {}, phaselockGcra: async () => "OK" } as unknown as RedisClient;
      const limiter = new RedisRateLimiter({ redis: fake, prefix: "x:" });
      await expect(limiter.consume("k", rule, new Date())).rejects.toThrow(/unexpected reply/);
    });
  });

describe("MemoryRateLimiter", () => {
  it("holds at most maxKeys, dropping expired and then least recently used keys", async () => {
    const limiter = new MemoryRateLimiter({ maxKeys: 100 });
    const clock = new FakeClock();
    for (let i = 0; i < 1000; i++) {
      await limiter.consume(`k${i}`, rule, clock.now());
      expect(limiter.size).toBeLessThanOrEqual(100);
    }
    clock.advance(1000); // all paid off
    for (let i = 0; i < 10; i++) await limiter.consume(`fresh${i}`, rule, clock.now());
    expect(limiter.size).toBeLessThan(100);
  });
});
