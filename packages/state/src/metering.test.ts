import { FakeClock } from "@phaselock/core";
import {
  describeIntegration,
  REDIS_TARGETS,
  type Service,
  TEST_REDIS_URL,
  uniquePrefix,
} from "@phaselock/testkit";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, beforeEach, expect, it } from "vitest";
import { LeasedMeter } from "./leased-meter.ts";
import { composeMeter, type Meter, RedisMeter } from "./metering.ts";
import { MemoryRateLimiter, type RateLimiter, RedisRateLimiter } from "./rate-limit.ts";
import { MemoryRecordQuota, type RecordQuota, RedisRecordQuota } from "./record-quota.ts";
import { createRedisClient, type RedisClient } from "./redis-client.ts";

/** A meter and the separate stores over the same counters (a meter's steps are theirs). */
interface Trio {
  meter: Meter;
  rateLimiter: RateLimiter;
  recordQuota: RecordQuota;
}

interface Backend {
  name: string;
  needs: Service[];
  setup(): Promise<void>;
  make(): Trio;
  teardown(): Promise<void>;
}

let redis: Redis | undefined;
const backends: Backend[] = [
  {
    name: "memory",
    needs: [],
    setup: async () => {},
    make: () => {
      const rateLimiter = new MemoryRateLimiter();
      const recordQuota = new MemoryRecordQuota();
      return { meter: composeMeter(rateLimiter, recordQuota), rateLimiter, recordQuota };
    },
    teardown: async () => {},
  },
  {
    name: "redis",
    needs: ["redis"],
    setup: async () => {
      redis = createRedisClient(TEST_REDIS_URL, { enableOfflineQueue: true }) as Redis;
    },
    make: () => {
      const prefix = uniquePrefix("meter");
      return {
        meter: new RedisMeter({ redis: redis!, ratePrefix: `${prefix}rl:`, quotaPrefix: `${prefix}rq:` }),
        rateLimiter: new RedisRateLimiter({ redis: redis!, prefix: `${prefix}rl:` }),
        recordQuota: new RedisRecordQuota({ redis: redis!, prefix: `${prefix}rq:` }),
      };
    },
    teardown: async () => {
      await redis?.quit();
    },
  },
  // The leased meter on one Redis and on a Redis Cluster: the same contract (small limits, so
  // every step still goes to Redis).
  ...REDIS_TARGETS.map((target): Backend => {
    let client: RedisClient | undefined;
    const meters: LeasedMeter[] = [];
    return {
      name: `leased, ${target.name}`,
      needs: target.needs,
      setup: async () => {
        client = createRedisClient(target.url, { enableOfflineQueue: true }, { enableOfflineQueue: true });
        await client.ping();
      },
      make: () => {
        const prefix = uniquePrefix("meter");
        const meter = new LeasedMeter({
          redis: client!,
          ratePrefix: `${prefix}rl:`,
          quotaPrefix: `${prefix}rq:`,
          flushMs: 0,
        });
        meters.push(meter);
        return {
          meter,
          rateLimiter: new RedisRateLimiter({ redis: client!, prefix: `${prefix}rl:` }),
          recordQuota: new RedisRecordQuota({ redis: client!, prefix: `${prefix}rq:` }),
        };
      },
      teardown: async () => {
        await Promise.all(meters.map((m) => m.close()));
        await client?.quit();
      },
    };
  }),
];

const MINUTE = 60_000;
const HOUR = 3_600_000;
const link = { key: "rl:link:l1", rule: { limit: 3, windowMs: MINUTE } };
const campaign = { key: "rl:campaign:c1", rule: { limit: 4, windowMs: MINUTE } };
const qLink = { key: "rq:link:l1", rule: { limit: 2, windowMs: HOUR } };
const qCampaign = { key: "rq:campaign:c1", rule: { limit: 3, windowMs: HOUR } };

for (const backend of backends) {
  describeIntegration(`Meter contract (${backend.name})`, backend.needs, () => {
    let t: Trio;
    let clock: FakeClock;
    beforeAll(() => backend.setup());
    afterAll(() => backend.teardown());
    beforeEach(() => {
      t = backend.make();
      clock = new FakeClock("2020-03-01T12:00:00Z");
    });

    it("consumes the rate steps in order and stops at the first refusal, as separate calls would", async () => {
      for (let i = 0; i < 3; i++) {
        expect((await t.meter.check([link, campaign], [], clock.now())).denied).toBeNull();
      }
      const refused = await t.meter.check([link, campaign], [], clock.now());
      expect(refused.denied?.index).toBe(0);
      expect(refused.denied?.decision).toMatchObject({ allowed: false, remaining: 0 });
      expect(refused.denied!.decision.retryAfterMs).toBeGreaterThan(0);
      // The campaign's step after the link's refusal was not consumed: one request left there.
      expect(await t.rateLimiter.consume(campaign.key, campaign.rule, clock.now())).toMatchObject({
        allowed: true,
        remaining: 0,
      });
      expect((await t.meter.check([campaign], [], clock.now())).denied?.index).toBe(0);
    });

    it("shares its counters with the separate rate limiter and record quota", async () => {
      await t.rateLimiter.consume(link.key, link.rule, clock.now());
      await t.rateLimiter.consume(link.key, link.rule, clock.now());
      expect((await t.meter.check([link], [], clock.now())).denied).toBeNull();
      expect((await t.meter.check([link], [], clock.now())).denied?.index).toBe(0);

      await t.recordQuota.admit(qLink.key, "m1", qLink.rule, clock.now());
      expect(await t.meter.admit([qLink], "m2", clock.now())).toBeNull();
      expect(await t.recordQuota.count(qLink.key, qLink.rule, clock.now())).toBe(2);
    });

    it("reads the quota counts only when every rate step allows", async () => {
      await t.meter.admit([qLink, qCampaign], "m1", clock.now());
      expect(await t.meter.check([link], [qLink, qCampaign], clock.now())).toEqual({
        denied: null,
        counts: [1, 1],
      });
      expect(await t.meter.check([], [qLink], clock.now())).toEqual({ denied: null, counts: [1] });
      await t.meter.check([link], [], clock.now());
      await t.meter.check([link], [], clock.now());
      const refused = await t.meter.check([link], [qLink], clock.now());
      expect([refused.denied?.index, refused.counts]).toEqual([0, []]);
    });

    it("admits a record under each quota in order, stopping at the first refusal; a record seen is free", async () => {
      expect(await t.meter.admit([qLink, qCampaign], "m1", clock.now())).toBeNull();
      expect(await t.meter.admit([qLink, qCampaign], "m2", clock.now())).toBeNull();
      expect(await t.meter.admit([qLink, qCampaign], "m1", clock.now())).toBeNull();
      expect(await t.meter.admit([qLink, qCampaign], "m3", clock.now())).toBe(0);
      // Refused at the link: the campaign did not count m3.
      expect(await t.recordQuota.count(qCampaign.key, qCampaign.rule, clock.now())).toBe(2);
      expect(await t.meter.admit([qCampaign, qLink], "m4", clock.now())).toBe(1);
      expect(await t.recordQuota.count(qCampaign.key, qCampaign.rule, clock.now())).toBe(3);
      // A new hour is a new window.
      clock.advance(HOUR);
      expect(await t.meter.admit([qLink, qCampaign], "m5", clock.now())).toBeNull();
    });

    it("refuses a bad rule before asking the store", async () => {
      await expect(
        t.meter.check([{ key: "k", rule: { limit: 0, windowMs: 1 } }], [], clock.now()),
      ).rejects.toThrow(RangeError);
      await expect(
        t.meter.admit([{ key: "k", rule: { limit: 1, windowMs: 0 } }], "m", clock.now()),
      ).rejects.toThrow(RangeError);
    });
  });
}

describeIntegration("RedisMeter round trips", ["redis"], () => {
  let client: Redis;
  beforeAll(() => {
    client = createRedisClient(TEST_REDIS_URL, { enableOfflineQueue: true }) as Redis;
  });
  afterAll(() => client.quit());

  it("sends one command per check and per admit, however many steps", async () => {
    const prefix = uniquePrefix("meter");
    const meter = new RedisMeter({ redis: client, ratePrefix: `${prefix}rl:`, quotaPrefix: `${prefix}rq:` });
    const clock = new FakeClock("2020-03-01T12:00:00Z");
    await meter.check([link], [], clock.now()); // loads the script (EVALSHA, then EVAL once)
    await meter.admit([qLink], "m0", clock.now());
    const sent: string[] = [];
    const original = client.sendCommand.bind(client);
    client.sendCommand = ((command: { name: string }) => {
      sent.push(command.name);
      return original(command as never);
    }) as typeof client.sendCommand;
    try {
      await meter.check([link, campaign], [qLink, qCampaign], clock.now());
      await meter.admit([qLink, qCampaign], "m1", clock.now());
    } finally {
      client.sendCommand = original;
    }
    expect(sent).toEqual(["evalsha", "evalsha"]);
  });

  /** Records the commands the client sends (name and argument count) until `stop()`. */
  function spy() {
    const sent: { name: string; args: number }[] = [];
    const original = client.sendCommand.bind(client);
    client.sendCommand = ((command: { name: string; args: unknown[] }) => {
      sent.push({ name: command.name, args: command.args.length });
      return original(command as never);
    }) as typeof client.sendCommand;
    return { sent, stop: () => (client.sendCommand = original) };
  }

  async function loadedMeter() {
    const prefix = uniquePrefix("meter");
    const meter = new RedisMeter({ redis: client, ratePrefix: `${prefix}rl:`, quotaPrefix: `${prefix}rq:` });
    await meter.check([], [], new Date()); // loads the script
    return meter;
  }

  it("sends calls made together as one script call, decided as the same calls one by one in order", async () => {
    const meter = await loadedMeter();
    const clock = new FakeClock("2020-03-01T12:00:00Z");
    const s = spy();
    let checks: Awaited<ReturnType<Meter["check"]>>[];
    let admits: (number | null)[];
    try {
      [checks, admits] = await Promise.all([
        Promise.all(Array.from({ length: 5 }, () => meter.check([campaign, link], [qLink], clock.now()))),
        Promise.all(["m1", "m2", "m3", "m1"].map((id) => meter.admit([qLink], id, clock.now()))),
      ]);
    } finally {
      s.stop();
    }
    expect(s.sent.map((c) => c.name)).toEqual(["evalsha"]);
    // The link's limit of 3 refuses the 4th (after the campaign's step took the 4th of 4), the
    // campaign's refuses the 5th.
    expect(checks.map((c) => c.denied?.index ?? null)).toEqual([null, null, null, 1, 0]);
    // Every check ran before every admit (call order): each read an empty quota.
    expect(checks.slice(0, 3).map((c) => c.counts)).toEqual([[0], [0], [0]]);
    expect(admits).toEqual([null, null, 0, null]);
    expect((await meter.check([], [qLink], clock.now())).counts).toEqual([2]);
  });

  it("keeps one call in flight: calls made meanwhile leave together once it has answered", async () => {
    const meter = await loadedMeter();
    const clock = new FakeClock("2020-03-01T12:00:00Z");
    const s = spy();
    try {
      const first = meter.check([link], [], clock.now());
      await new Promise((r) => setImmediate(r)); // the first has left, its answer not yet read
      expect(s.sent).toHaveLength(1);
      const rest = Array.from({ length: 4 }, () => meter.check([link], [], clock.now()));
      await new Promise((r) => setImmediate(r));
      expect(s.sent).toHaveLength(1); // waiting for the first's answer
      const all = await Promise.all([first, ...rest]);
      expect(all.map((c) => c.denied?.index ?? null)).toEqual([null, null, null, 0, 0]);
    } finally {
      s.stop();
    }
    expect(s.sent.map((c) => c.name)).toEqual(["evalsha", "evalsha"]);
  });

  it("splits a long queue into script calls of at most 16,384 arguments, in order", async () => {
    const meter = await loadedMeter();
    const clock = new FakeClock("2020-03-01T12:00:00Z");
    const big = { key: "rl:big", rule: { limit: 2500, windowMs: MINUTE } };
    const s = spy();
    let results: Awaited<ReturnType<Meter["check"]>>[];
    try {
      results = await Promise.all(
        Array.from({ length: 3000 }, () => meter.check([big], [qLink], clock.now())),
      );
    } finally {
      s.stop();
    }
    expect(s.sent.length).toBeGreaterThan(1);
    // sha, key count, then the keys and arguments
    for (const c of s.sent) expect(c.args - 2).toBeLessThanOrEqual(16_384);
    const allowed = results.map((r) => r.denied === null);
    expect(allowed.indexOf(false)).toBe(2500);
    expect(allowed.slice(2500).every((a) => !a)).toBe(true);
  });

  it("fails only the call whose step Redis refused; the others in its script are decided", async () => {
    const prefix = uniquePrefix("meter");
    const meter = new RedisMeter({ redis: client, ratePrefix: `${prefix}rl:`, quotaPrefix: `${prefix}rq:` });
    const clock = new FakeClock("2020-03-01T12:00:00Z");
    // A rate key of the wrong type (a Redis writer's doing): its script step fails (WRONGTYPE).
    await client.set(`${prefix}rl:{rl:link:bad}`, "x");
    const bad = { key: "rl:link:bad", rule: link.rule };
    const s = spy();
    let results: PromiseSettledResult<unknown>[];
    try {
      results = await Promise.allSettled([
        meter.check([link], [qLink], clock.now()),
        meter.check([bad], [], clock.now()),
        meter.admit([qLink], "m1", clock.now()),
      ]);
    } finally {
      s.stop();
    }
    expect(s.sent.filter((c) => c.name === "evalsha" || c.name === "eval")).toHaveLength(1);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect((results[0] as PromiseFulfilledResult<{ denied: unknown }>).value.denied).toBeNull();
    expect((results[2] as PromiseFulfilledResult<unknown>).value).toBeNull();
  });

  it("fails the calls waiting behind a failed batch at once, without sending them", async () => {
    const meter = await loadedMeter();
    const clock = new FakeClock("2020-03-01T12:00:00Z");
    // The first script call is held, never sent: its connection "hangs" until we fail it.
    const sent: string[] = [];
    let held: { reject(err: Error): void } | undefined;
    const original = client.sendCommand.bind(client);
    client.sendCommand = ((command: { name: string; reject(err: Error): void }) => {
      sent.push(command.name);
      if (held === undefined) {
        held = command;
        return (command as unknown as { promise: Promise<unknown> }).promise;
      }
      return original(command as never);
    }) as typeof client.sendCommand;
    let settled: PromiseSettledResult<unknown>[];
    try {
      const first = meter.check([link], [], clock.now());
      await new Promise((r) => setImmediate(r)); // the first has left
      const waiting = [meter.check([link], [qLink], clock.now()), meter.admit([qLink], "m1", clock.now())];
      await new Promise((r) => setImmediate(r));
      expect(sent).toEqual(["evalsha"]); // the others wait for its answer
      held!.reject(new Error("Command timed out"));
      settled = await Promise.allSettled([first, ...waiting]);
      expect(sent).toEqual(["evalsha"]); // the waiting calls never left
    } finally {
      client.sendCommand = original;
    }
    expect(settled.map((r) => r.status)).toEqual(["rejected", "rejected", "rejected"]);
    for (const r of settled) expect((r as PromiseRejectedResult).reason.message).toBe("Command timed out");
    // Nothing is stuck: the next call is decided, and the failed ones spent nothing.
    const next = await meter.check([link], [qLink], clock.now());
    expect(next).toEqual({ denied: null, counts: [0] });
  });

  it("fails a call whose client throws instead of rejecting, and goes on serving", async () => {
    const meter = await loadedMeter();
    const clock = new FakeClock("2020-03-01T12:00:00Z");
    const original = client.sendCommand.bind(client);
    let thrown = false;
    client.sendCommand = ((command: unknown) => {
      if (!thrown) {
        thrown = true;
        throw new Error("client broke");
      }
      return original(command as never);
    }) as typeof client.sendCommand;
    try {
      await expect(meter.check([link], [], clock.now())).rejects.toThrow("client broke");
      expect(thrown).toBe(true);
      expect((await meter.check([link], [], clock.now())).denied).toBeNull();
    } finally {
      client.sendCommand = original;
    }
  });

  it("fails every call of a batch Redis did not answer, and serves the next once it is back", async () => {
    const own = createRedisClient(TEST_REDIS_URL, { enableOfflineQueue: false, lazyConnect: true }) as Redis;
    try {
      await own.connect();
      const prefix = uniquePrefix("meter");
      const meter = new RedisMeter({ redis: own, ratePrefix: `${prefix}rl:`, quotaPrefix: `${prefix}rq:` });
      const clock = new FakeClock("2020-03-01T12:00:00Z");
      const back = new Promise((r) => own.once("ready", r));
      own.disconnect(true); // reconnects; meanwhile commands fail at once (no offline queue)
      const calls = [
        meter.check([link], [], clock.now()),
        meter.admit([qLink], "m1", clock.now()),
        meter.check([campaign], [qLink], clock.now()),
      ];
      for (const c of await Promise.allSettled(calls)) expect(c.status).toBe("rejected");
      await back;
      expect((await meter.check([link], [qLink], clock.now())).denied).toBeNull();
      expect(await meter.admit([qLink], "m1", clock.now())).toBeNull();
    } finally {
      own.disconnect();
    }
  });
});
