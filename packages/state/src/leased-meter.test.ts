import { FakeClock } from "@phaselock/core";
import { describeIntegration, REDIS_TARGETS, uniquePrefix } from "@phaselock/testkit";
import fc from "fast-check";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import {
  LeasedMeter,
  type LeasedMeterOptions,
  leaseCap,
  MAX_LEASE,
  MAX_SCRIPT_ARGS,
} from "./leased-meter.ts";
import { composeMeter, type Meter } from "./metering.ts";
import { MemoryRateLimiter, RedisRateLimiter } from "./rate-limit.ts";
import { MemoryRecordQuota, windowOf } from "./record-quota.ts";
import { createRedisClient, type RedisClient, taggedKey } from "./redis-client.ts";

const MINUTE = 60_000;
const HOUR = 3_600_000;
/** the start of an hour: quota windows never end during a test (their sets expire in real ms) */
const T0 = "2020-03-01T12:00:00Z";

/** An exact meter: the in-process stores, same arithmetic as the Redis scripts. */
const exactMeter = (): Meter => composeMeter(new MemoryRateLimiter(), new MemoryRecordQuota());

/** Counts the scripts `client` sends while `fn` runs. */
async function scriptsSent(client: RedisClient, fn: () => Promise<void>): Promise<number> {
  let n = 0;
  const original = client.sendCommand.bind(client);
  client.sendCommand = ((command: { name: string }) => {
    if (command.name === "evalsha" || command.name === "eval") n++;
    return original(command as never);
  }) as typeof client.sendCommand;
  try {
    await fn();
  } finally {
    client.sendCommand = original;
  }
  return n;
}

for (const target of REDIS_TARGETS)
  describeIntegration(`LeasedMeter (${target.name})`, target.needs, () => {
    let client: RedisClient;
    const opened: LeasedMeter[] = [];
    beforeAll(async () => {
      client = createRedisClient(target.url, { enableOfflineQueue: true }, { enableOfflineQueue: true });
      await client.ping();
    });
    afterAll(async () => {
      await Promise.all(opened.map((m) => m.close()));
      await client.quit();
    });
    // Every test here takes rate tokens ahead (`rateLeases`, off by default): the mechanism.
    const open = (prefix: string, o: Partial<LeasedMeterOptions> = {}) => {
      const m = new LeasedMeter({
        redis: client,
        ratePrefix: `${prefix}rl:`,
        quotaPrefix: `${prefix}rq:`,
        flushMs: 0,
        rateLeases: true,
        ...o,
      });
      opened.push(m);
      return m;
    };
    /** the real records (no placeholders) and the placeholders in a window's set */
    const members = async (
      prefix: string,
      key: string,
      rule: { limit: number; windowMs: number },
      now: Date,
    ) => {
      const all = await client.smembers(taggedKey(`${prefix}rq:`, key, `:${windowOf(rule, now).index}`));
      return {
        records: all.filter((m) => !m.startsWith("~lease:")),
        placeholders: all.filter((m) => m.startsWith("~lease:")),
      };
    };

    it("serves a hot key with a large limit from leases: far fewer scripts than requests", async () => {
      const prefix = uniquePrefix("lease");
      const meter = open(prefix);
      const clock = new FakeClock(T0);
      const rate = { key: "rl:campaign:hot", rule: { limit: 6000, windowMs: MINUTE } };
      const quota = { key: "rq:campaign:hot", rule: { limit: 12_000, windowMs: HOUR } };
      const requests = 2000;
      const sent = await scriptsSent(client, async () => {
        for (let i = 0; i < requests; i++) {
          const r = await meter.check([rate], [quota], clock.now());
          expect(r).toEqual({ denied: null, counts: [expect.any(Number)] });
          expect(r.counts[0]).toBeLessThan(quota.rule.limit);
          expect(await meter.admit([quota], `m${i}`, clock.now())).toBeNull();
          clock.advance(1);
        }
        await meter.flush({ all: true });
      });
      // Two steps per request (check, admit) would be 4000 scripts with the exact meter.
      expect(sent).toBeLessThan(requests / 20); // 56 when written
      // Every record is in Redis, every placeholder given back, every token accounted.
      const { records, placeholders } = await members(prefix, quota.key, quota.rule, clock.now());
      expect(records.length).toBe(requests);
      expect(placeholders).toEqual([]);
      const exact = new RedisRateLimiter({ redis: client, prefix: `${prefix}rl:` });
      const reference = new MemoryRateLimiter();
      const t = new FakeClock(T0);
      for (let i = 0; i < requests; i++, t.advance(1)) await reference.consume(rate.key, rate.rule, t.now());
      expect(await exact.consume(rate.key, rate.rule, clock.now())).toEqual(
        await reference.consume(rate.key, rate.rule, clock.now()),
      );
    });

    it("keeps every call small however large the limit, on an auto-pipelining client as createStores builds it", async () => {
      // A limit of millions once let a lease grow to 250,000 slots; its commit's arguments made
      // ioredis throw inside its auto-pipeline, and the gateway process crashed.
      const piped = createRedisClient(target.url, { enableAutoPipelining: true });
      await piped.ping().catch(() => {});
      await new Promise<void>((ok) => (piped.status === "ready" ? ok() : piped.once("ready", () => ok())));
      const prefix = uniquePrefix("lease");
      const meter = new LeasedMeter({
        redis: piped,
        ratePrefix: `${prefix}rl:`,
        quotaPrefix: `${prefix}rq:`,
        flushMs: 0,
        rateLeases: true,
      });
      const clock = new FakeClock(T0);
      const rate = { key: "rl:campaign:huge", rule: { limit: 100_000_000, windowMs: MINUTE } };
      const quota = { key: "rq:campaign:huge", rule: { limit: 100_000_000, windowMs: HOUR } };
      let most = 0;
      const original = piped.sendCommand.bind(piped);
      piped.sendCommand = ((command: { name: string; args: unknown[] }) => {
        most = Math.max(most, command.args.length);
        return original(command as never);
      }) as typeof piped.sendCommand;
      try {
        let n = 0;
        for (let burst = 0; burst < 300; burst++) {
          // 64 requests in flight together, as a busy gateway has them.
          await Promise.all(
            Array.from({ length: 64 }, async () => {
              const i = n++;
              expect((await meter.check([rate], [quota], clock.now())).denied).toBeNull();
              expect(await meter.admit([quota], `m${i}`, clock.now())).toBeNull();
            }),
          );
          clock.advance(5);
        }
        await meter.flush({ all: true });
        expect(leaseCap(quota.rule.limit)).toBe(MAX_LEASE);
        expect(most).toBeLessThanOrEqual(MAX_SCRIPT_ARGS + 16);
        const { records, placeholders } = await members(prefix, quota.key, quota.rule, clock.now());
        expect(records.length).toBe(19_200);
        expect(placeholders).toEqual([]);
      } finally {
        piped.sendCommand = original;
        await meter.close();
        await piped.quit();
      }
    });

    it("meters a gateway's request (default limits, many links) in at most one script on one Redis", async () => {
      const prefix = uniquePrefix("lease");
      const meter = open(prefix);
      const clock = new FakeClock(T0);
      const requests = 1000;
      const steps = (link: string) => ({
        rates: [
          { key: `rl:link:${link}`, rule: { limit: 30, windowMs: MINUTE } },
          { key: "rl:campaign:c", rule: { limit: 6000, windowMs: MINUTE } },
        ],
        quotas: [
          { key: `rq:link:${link}`, rule: { limit: 60, windowMs: HOUR } },
          { key: "rq:campaign:c", rule: { limit: 12_000, windowMs: HOUR } },
        ],
      });
      let admits = 0;
      const checks = await scriptsSent(client, async () => {
        for (let i = 0; i < requests; i++) {
          const { rates, quotas } = steps(`l${i % 100}`);
          expect((await meter.check(rates, quotas, clock.now())).denied).toBeNull();
          admits += await scriptsSent(client, async () => {
            expect(await meter.admit(quotas, `m${i}`, clock.now())).toBeNull();
          });
          clock.advance(2);
        }
      });
      // The exact meters: two scripts per request (RedisMeter), or eight separate calls.
      if (target.name === "redis") expect(checks - admits).toBeLessThanOrEqual(requests);
      else expect(checks - admits).toBeLessThanOrEqual(2 * requests); // one per key: link rate, link quota
      expect(admits).toBeLessThan(requests / 20); // the slot was reserved by the check
    });

    it("keeps small limits exact: one script per step, the same decisions as the exact limiter", async () => {
      const prefix = uniquePrefix("lease");
      const meter = open(prefix);
      const exact = new RedisRateLimiter({ redis: client, prefix: uniquePrefix("exact") });
      const clock = new FakeClock(T0);
      const link = { key: "rl:link:l1", rule: { limit: 30, windowMs: MINUTE } }; // the default
      expect(leaseCap(30)).toBe(1);
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 32; i++) {
          let r: Awaited<ReturnType<Meter["check"]>> | undefined;
          expect(
            await scriptsSent(client, async () => {
              r = await meter.check([link], [], clock.now());
            }),
          ).toBe(1);
          const e = await exact.consume(link.key, link.rule, clock.now());
          expect(r!.denied === null).toBe(e.allowed);
          if (r!.denied) expect(r!.denied.decision).toEqual(e);
          clock.advance(700);
        }
      }
      expect(meter.held.tokens).toBe(0);
    });

    it("gives unused tokens back at expiry and on close, so one gateway refuses no earlier than today", async () => {
      const prefix = uniquePrefix("lease");
      const meter = open(prefix);
      const clock = new FakeClock(T0);
      const rate = { key: "rl:campaign:c", rule: { limit: 400, windowMs: MINUTE } };
      for (let i = 0; i < 200; i++) await meter.check([rate], [], clock.now());
      expect(meter.held.tokens).toBeGreaterThan(0);
      await meter.close();
      // Exactly 200 taken: 200 more in this instant, then a refusal.
      const exact = new RedisRateLimiter({ redis: client, prefix: `${prefix}rl:` });
      for (let i = 0; i < 200; i++)
        expect((await exact.consume(rate.key, rate.rule, clock.now())).allowed).toBe(true);
      expect((await exact.consume(rate.key, rate.rule, clock.now())).allowed).toBe(false);
    });

    it("takes tokens ahead only while the exact meter's bucket could not fill up meanwhile", async () => {
      // Tokens held here count as still in the exact meter's bucket: if Redis's bucket refilled
      // while they are held, the refill the exact meter would have wasted (its bucket full) would
      // be spendable here on top of them.
      const prefix = uniquePrefix("lease");
      const meter = open(prefix, { leaseLifeMs: 2500 });
      const exact = exactMeter();
      const clock = new FakeClock(T0);
      const rate = { key: "rl:campaign:w", rule: { limit: 100, windowMs: 10_000 } }; // 100 ms apart
      let got = 0;
      let want = 0;
      const request = async () => {
        if ((await meter.check([rate], [], clock.now())).denied === null) got++;
        if ((await exact.check([rate], [], clock.now())).denied === null) want++;
      };
      for (let i = 0; i < 12; i++) await request(); // leases of 1, 2, 4, 5: each used up at once
      clock.advance(20_000); // the bucket is full again
      await request(); // would take 5, holding 4, on an empty debt
      clock.advance(2400);
      for (let i = 0; i < 110; i++) await request();
      expect(got).toBe(want);
    });

    it("drops every lease when its connection goes, and then throws rather than serve one", async () => {
      const own = createRedisClient(target.url);
      own.on("error", () => {});
      await vi.waitFor(() => expect(own.status).toBe("ready"), { timeout: 5000 });
      const prefix = uniquePrefix("lease");
      const meter = new LeasedMeter({
        redis: own,
        ratePrefix: `${prefix}rl:`,
        quotaPrefix: `${prefix}rq:`,
        flushMs: 0,
        rateLeases: true,
      });
      const clock = new FakeClock(T0);
      const rate = { key: "rl:campaign:gone", rule: { limit: 6000, windowMs: MINUTE } };
      const quota = { key: "rq:campaign:gone", rule: { limit: 12_000, windowMs: HOUR } };
      for (let i = 0; i < 200; i++) {
        await meter.check([rate], [quota], clock.now());
        await meter.admit([quota], `m${i}`, clock.now());
      }
      expect(meter.held.tokens).toBeGreaterThan(0);
      expect(meter.held.slots).toBeGreaterThan(0);
      own.disconnect();
      // At once, before the socket's close is even seen: the client is no longer ready.
      await expect(meter.check([rate], [quota], clock.now())).rejects.toThrow();
      expect(meter.held).toEqual({ tokens: 0, slots: 0, pending: 0 });
      await expect(meter.admit([quota], "m-new", clock.now())).rejects.toThrow();
      await meter.close();
    });

    it("commits records admitted from a lease; a record already admitted elsewhere just frees its slot", async () => {
      const prefix = uniquePrefix("lease");
      const a = open(prefix);
      const b = open(prefix);
      const clock = new FakeClock(T0);
      const quota = { key: "rq:campaign:c", rule: { limit: 100, windowMs: HOUR } }; // leases of up to 5
      for (let i = 0; i < 30; i++) expect(await a.admit([quota], `a${i}`, clock.now())).toBeNull();
      expect(a.held.pending).toBeGreaterThan(0);
      // Some of A's records reach B too before A commits them.
      for (let i = 0; i < 30; i += 3) expect(await b.admit([quota], `a${i}`, clock.now())).toBeNull();
      await a.flush({ all: true });
      await b.flush({ all: true });
      const { records, placeholders } = await members(prefix, quota.key, quota.rule, clock.now());
      expect(records.sort()).toEqual(Array.from({ length: 30 }, (_, i) => `a${i}`).sort());
      expect(placeholders).toEqual([]);
    });

    it("falls back to the exact step when no slot is left: a record seen through another gateway is free at the limit", async () => {
      const prefix = uniquePrefix("lease");
      const a = open(prefix);
      const b = open(prefix);
      const clock = new FakeClock(T0);
      const quota = { key: "rq:link:l", rule: { limit: 3, windowMs: HOUR } };
      for (const id of ["m1", "m2", "m3"]) expect(await a.admit([quota], id, clock.now())).toBeNull();
      expect(await b.admit([quota], "m4", clock.now())).toBe(0);
      expect(await b.admit([quota], "m2", clock.now())).toBeNull();
    });

    // Three ways rate refunds lowered the debt below the exact meter's with rate tokens taken
    // ahead (two gateways, limit 100 per 10 s, leases of up to 5, life 2500 ms): each admitted one
    // request more than the exact meter (C once A and B were fixed). A: a background flush gave
    // tokens back by its own latest clock, 100 ms behind the key's, so more than the debt still
    // held of them. B: a lease was granted while the debt held another gateway's expired,
    // unreturned tokens, which went back during it. C: a refund took back units already paid off,
    // another lease's refund having moved them down.
    it.each([
      {
        name: "A, a refund by a clock behind the key's",
        steps: [
          [1, 0, "request", 25],
          [1, 2500, "record", 1],
          [0, 100, "request", 1],
          [1, 0, "flush", 1],
          [0, 0, "request", 100],
        ],
      },
      {
        name: "B, an expired hold given back during a later lease",
        steps: [
          [0, 0, "request", 25],
          [0, 2500, "record", 1],
          [1, 0, "request", 21],
          [0, 0, "flush", 1],
          [1, 2200, "request", 110],
        ],
      },
      {
        name: "C, a refund of units paid off since one beneath them went back",
        steps: [
          [0, 0, "request", 25],
          [0, 2500, "record", 1],
          [1, 0, "request", 25],
          [0, 0, "flush", 1],
          [1, 2600, "record", 1],
          [0, 0, "request", 1],
          [1, 0, "flush", 1],
          [0, 0, "request", 110],
        ],
      },
    ] as Array<{ name: string; steps: Array<[gw: number, dt: number, op: string, burst: number]> }>)(
      "gives back only what the exact meter would not hold: $name",
      async ({ steps }) => {
        const prefix = uniquePrefix("lease");
        const meters = [open(prefix, { leaseLifeMs: 2500 }), open(prefix, { leaseLifeMs: 2500 })];
        const exact = exactMeter();
        const clock = new FakeClock(T0);
        const rate = { key: "rl:campaign:r", rule: { limit: 100, windowMs: 10_000 } };
        const quota = { key: "rq:campaign:r", rule: { limit: 100, windowMs: HOUR } };
        let got = 0;
        let want = 0;
        let record = 0;
        for (const [gw, dt, op, burst] of steps) {
          clock.advance(dt);
          for (let i = 0; i < burst; i++) {
            const m = meters[gw]!;
            if (op === "flush") await m.flush();
            else if (op === "record") await m.admit([quota], `m${record++}`, clock.now());
            else {
              if ((await m.check([rate], [], clock.now())).denied === null) got++;
              if ((await exact.check([rate], [], clock.now())).denied === null) want++;
            }
          }
        }
        expect(got).toBeLessThanOrEqual(want);
      },
    );

    it("takes no tokens ahead while the key holds a hold it cannot read (another version's)", async () => {
      const prefix = uniquePrefix("lease");
      const a = open(prefix, { leaseLifeMs: 2500 });
      const clock = new FakeClock(T0);
      const rate = { key: "rl:campaign:v", rule: { limit: 100, windowMs: 10_000 } };
      const stored = taggedKey(`${prefix}rl:`, rate.key);
      // The format before 2026-12-02 ("units:until"), live for an hour.
      const foreign = `40000:${Date.parse(T0) + HOUR}`;
      await client.hset(stored, "h:older-gateway:1", foreign);
      // Enough requests at one instant that the 25th would lease tokens ahead (case A above).
      for (let i = 0; i < 30; i++) expect((await a.check([rate], [], clock.now())).denied).toBeNull();
      const fields = await client.hgetall(stored);
      expect(Object.keys(fields).filter((f) => f.startsWith("h:"))).toEqual(["h:older-gateway:1"]);
      expect(fields["h:older-gateway:1"]).toBe(foreign);
    });

    it("gives nothing back to a newer copy of the key: a lease that outlived its key refunds nothing", async () => {
      const prefix = uniquePrefix("lease");
      const a = open(prefix, { leaseLifeMs: 2500 });
      const b = open(prefix, { leaseLifeMs: 2500 });
      const exact = exactMeter();
      const clock = new FakeClock(T0);
      const rate = { key: "rl:campaign:x", rule: { limit: 100, windowMs: 10_000 } };
      const stored = taggedKey(`${prefix}rl:`, rate.key);
      // A key long hot: many units given back on it already.
      await client.hset(stored, "ref", "1000000000");
      let got = 0;
      let want = 0;
      const request = async (m: LeasedMeter) => {
        if ((await m.check([rate], [], clock.now())).denied === null) got++;
        if ((await exact.check([rate], [], clock.now())).denied === null) want++;
      };
      for (let i = 0; i < 25; i++) await request(a); // the last ones lease tokens ahead
      clock.advance(3000);
      await a.admit([{ key: "rq:campaign:x", rule: { limit: 100, windowMs: HOUR } }], "m0", clock.now());
      // A's lease has lapsed with tokens unused (A has seen the time move on); the key expires
      // (deleted here: Redis's TTL runs on real time) and B's traffic makes it anew, with nothing
      // given back on it yet. A's refund, capped against the old copy's `ref`, must not touch it.
      await client.del(stored);
      for (let i = 0; i < 100; i++) await request(b);
      await a.flush();
      for (let i = 0; i < 10; i++) await request(b);
      expect(got).toBeLessThanOrEqual(want);
    });

    it.each([
      { mode: "one call at a time", concurrent: false, seed: undefined },
      { mode: "bursts in flight together", concurrent: true, seed: undefined },
      // The run that found rate tokens taken ahead admitting one request more than the exact
      // meter with two gateways (264 against 263 where CI's shrinking stopped): case A above.
      { mode: "one call at a time, seed -1241686700", concurrent: false, seed: -1241686700 },
    ])(
      "admits, across gateways, never more than the exact meter would (fuzzed, $mode)",
      async ({ concurrent, seed }) => {
        // Large enough limits that leases grow (caps 5 and 5), small enough that they run out; a
        // lease life of 25 emission intervals, as in production (250 ms at 6000 a minute).
        const rate = { key: "rl:campaign:f", rule: { limit: 100, windowMs: 10_000 } };
        const quota = { key: "rq:campaign:f", rule: { limit: 100, windowMs: HOUR } };
        const command = fc.record({
          gw: fc.nat(3),
          dt: fc.oneof(
            fc.constant(0),
            fc.constant(0),
            fc.integer({ min: 0, max: 300 }),
            fc.integer({ min: 0, max: 4000 }),
          ),
          op: fc.constantFrom("request", "request", "record", "record", "flush"),
          record: fc.nat(150),
          /** how many times the op is repeated at that instant */
          burst: fc.oneof(fc.constant(1), fc.integer({ min: 1, max: 40 })),
        });
        await fc.assert(
          fc.asyncProperty(
            fc.integer({ min: 1, max: 4 }),
            fc.array(command, { minLength: 20, maxLength: 100, size: "max" }),
            async (n, cmds) => {
              const prefix = uniquePrefix("fuzz");
              const meters = Array.from(
                { length: n },
                () =>
                  new LeasedMeter({
                    redis: client,
                    ratePrefix: `${prefix}rl:`,
                    quotaPrefix: `${prefix}rq:`,
                    flushMs: 0,
                    leaseLifeMs: 2500,
                    rateLeases: true,
                  }),
              );
              const exact = exactMeter();
              const clock = new FakeClock(T0);
              const got = { requests: [] as boolean[], spent: [] as boolean[], records: [] as boolean[] };
              const want = { requests: [] as boolean[], spent: [] as boolean[], records: [] as boolean[] };
              const admitted = new Set<string>();
              const exactAdmitted = new Set<string>();
              /** One op on a leased meter; the exact meter's part runs in issue order, after it. */
              const leased = async (m: LeasedMeter, op: string, id: string, now: Date) => {
                if (op === "flush") return m.flush();
                if (op === "request") {
                  const r = await m.check([rate], [quota], now);
                  got.requests.push(r.denied === null);
                  if (!r.denied && !concurrent) got.spent.push(r.counts[0]! >= quota.rule.limit);
                } else {
                  const r = (await m.admit([quota], id, now)) === null;
                  got.records.push(r);
                  if (r) admitted.add(id);
                }
              };
              const reference = async (op: string, id: string, now: Date) => {
                if (op === "request") {
                  const e = await exact.check([rate], [quota], now);
                  want.requests.push(e.denied === null);
                  if (!e.denied && !concurrent && got.requests.at(-1)) {
                    want.spent.push(e.counts[0]! >= quota.rule.limit);
                  }
                } else if (op === "record") {
                  const e = (await exact.admit([quota], id, now)) === null;
                  want.records.push(e);
                  if (e) exactAdmitted.add(id);
                }
              };
              try {
                for (const c of cmds) {
                  clock.advance(c.dt);
                  const now = clock.now();
                  const burst = Array.from({ length: c.burst }, (_, i) => ({
                    // In flight together, a burst spreads over the gateways.
                    m: meters[(c.gw + (concurrent ? i : 0)) % n]!,
                    id: `m${c.record + i}`,
                  }));
                  if (concurrent) {
                    await Promise.all(burst.map((b) => leased(b.m, c.op, b.id, now)));
                    for (const b of burst) await reference(c.op, b.id, now);
                  } else {
                    for (const b of burst) {
                      await leased(b.m, c.op, b.id, now);
                      await reference(c.op, b.id, now);
                    }
                  }
                }
              } finally {
                await Promise.all(meters.map((m) => m.close()));
              }
              const count = (xs: boolean[]) => xs.filter(Boolean).length;
              if (n === 1 && !concurrent) {
                // One gateway: exactly the exact meter's decisions (unused leases given back).
                expect(got).toEqual(want);
              } else {
                expect(count(got.requests)).toBeLessThanOrEqual(count(want.requests));
                expect(admitted.size).toBeLessThanOrEqual(exactAdmitted.size);
              }
              // Redis holds exactly the records admitted, no placeholder, never more than the limit.
              const { records, placeholders } = await members(prefix, quota.key, quota.rule, clock.now());
              expect(records.sort()).toEqual([...admitted].sort());
              expect(placeholders).toEqual([]);
              expect(records.length).toBeLessThanOrEqual(quota.rule.limit);
            },
          ),
          // Up to 100 runs, but never past the test's timeout: one call at a time on a Redis
          // Cluster is ~60,000 round trips, which a slow machine did not finish in 60 s.
          { numRuns: 100, interruptAfterTimeLimit: 40_000, ...(seed === undefined ? {} : { seed }) },
        );
      },
      60_000,
    );
  });
