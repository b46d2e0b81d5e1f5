import {
  describeIntegration,
  type PrivateRedisCluster,
  REDIS_TARGETS,
  startPrivateRedisCluster,
  uniquePrefix,
} from "@phaselock/testkit";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import type { ChangeHint } from "./changes.ts";
import { LeasedMeter } from "./leased-meter.ts";
import { RedisMeter } from "./metering.ts";
import { createStores, type Stores } from "./stores.ts";
import { eventually, T0 } from "./test-fixtures.ts";

for (const target of REDIS_TARGETS)
  describeIntegration(`REDIS_PREFIX: deployments sharing one Redis (${target.name})`, target.needs, () => {
    const opened: Stores[] = [];
    afterAll(async () => {
      await Promise.all(opened.map((s) => s.close()));
    });
    const open = (prefix: string) => {
      const s = createStores({ redisUrl: target.url, prefix });
      opened.push(s);
      return s;
    };
    const listen = (s: Stores) => {
      const hints: ChangeHint[] = [];
      let up = false;
      s.bus.subscribe({
        onMessage: (h) => void hints.push(h),
        onStatus: (st) => {
          if (st === "connected" || st === "heartbeat") up = true;
        },
      });
      return { hints, up: () => up };
    };

    it("do not see each other's changes, rate limits or record quotas", async () => {
      const base = uniquePrefix("deployments");
      const a = open(`${base}a:`);
      const a2 = open(`${base}a:`);
      const b = open(`${base}b:`);
      const onA = listen(a2);
      const onB = listen(b);
      await eventually(() => expect(onA.up() && onB.up()).toBe(true));

      await a.bus.publish({ version: 7 });
      await eventually(() => expect(onA.hints).toEqual([{ version: 7 }]));
      await b.bus.publish({ version: 1 });
      await eventually(() => expect(onB.hints).toEqual([{ version: 1 }]));
      // A's hint never reached B (and B's never reached A).
      expect(onB.hints).toEqual([{ version: 1 }]);
      expect(onA.hints).toEqual([{ version: 7 }]);

      const rule = { limit: 1, windowMs: 60_000 };
      expect((await a.rateLimiter.consume("campaign-x", rule, T0)).allowed).toBe(true);
      expect((await a2.rateLimiter.consume("campaign-x", rule, T0)).allowed).toBe(false);
      expect((await b.rateLimiter.consume("campaign-x", rule, T0)).allowed).toBe(true);

      const quota = { limit: 1, windowMs: 3_600_000 };
      expect((await a.recordQuota.admit("link-x", "m1", quota, T0)).allowed).toBe(true);
      expect((await a2.recordQuota.admit("link-x", "m2", quota, T0)).allowed).toBe(false);
      expect((await b.recordQuota.admit("link-x", "m2", quota, T0)).allowed).toBe(true);
      await a.ping();
    });

    it("meter a request over several limiter names, on the same counters as the separate stores", async () => {
      // Names that hash to different cluster slots: one script over them all would be CROSSSLOT.
      const s = open(uniquePrefix("meter"));
      await vi.waitFor(() => s.ping(), { timeout: 5000 });
      const rule = { limit: 1, windowMs: 60_000 };
      const quota = { limit: 1, windowMs: 3_600_000 };
      const rates = ["link-1", "campaign-1", "volunteer-1"].map((key) => ({ key, rule }));
      const counts = ["qlink-1", "qcampaign-1"].map((key) => ({ key, rule: quota }));
      expect(await s.meter.check(rates, counts, T0)).toEqual({ denied: null, counts: [0, 0] });
      expect((await s.meter.check(rates, counts, T0)).denied?.index).toBe(0);
      expect((await s.rateLimiter.consume("campaign-1", rule, T0)).allowed).toBe(false);
      expect(await s.meter.admit(counts, "m1", T0)).toBeNull();
      expect(await s.recordQuota.count("qcampaign-1", quota, T0)).toBe(1);
      expect(await s.meter.admit(counts, "m2", T0)).toBe(0);
    });
  });

for (const target of REDIS_TARGETS)
  describeIntegration(`createStores: which meter the limits use (${target.name})`, target.needs, () => {
    it("the exact meter by default (one script per call on one Redis), the leased one only when asked", async () => {
      const prefix = uniquePrefix("meter-choice");
      const exact = createStores({ redisUrl: target.url, prefix });
      const leased = createStores({ redisUrl: target.url, prefix, leasedLimits: true });
      try {
        expect(exact.meter).not.toBeInstanceOf(LeasedMeter);
        if (target.name === "redis") expect(exact.meter).toBeInstanceOf(RedisMeter);
        expect(leased.meter).toBeInstanceOf(LeasedMeter);
      } finally {
        await Promise.all([exact.close(), leased.close()]);
      }
    });
  });

describeIntegration(
  "createStores: the readiness probe on a Redis Cluster with a master stopped",
  ["redis-cluster"],
  () => {
    let cluster: PrivateRedisCluster;
    let stores: Stores;
    beforeAll(async () => {
      cluster = await startPrivateRedisCluster();
      stores = createStores({ redisUrl: cluster.url, prefix: uniquePrefix("ping") });
      await vi.waitFor(() => stores.ping(), { timeout: 10_000, interval: 50 });
    }, 60_000);
    afterAll(async () => {
      await stores?.close();
      await cluster?.close();
    });

    it("fails while the cluster refuses keys (CLUSTERDOWN), though the other masters answer PING", async () => {
      const [live, , stopped] = cluster.ports as [number, number, number];
      await cluster.stop(stopped);
      // The masters left still answer PING once the cluster has marked itself down.
      const other = new Redis({ host: "127.0.0.1", port: live });
      try {
        await vi.waitFor(
          async () => expect(String(await other.cluster("INFO"))).toContain("cluster_state:fail"),
          { timeout: 15_000, interval: 100 },
        );
        expect(await other.ping()).toBe("PONG");
      } finally {
        other.disconnect();
      }
      for (let i = 0; i < 10; i++) await expect(stores.ping()).rejects.toThrow();
      await cluster.start(stopped);
      await vi.waitFor(() => stores.ping(), { timeout: 30_000, interval: 100 });
    }, 60_000);
  },
);
