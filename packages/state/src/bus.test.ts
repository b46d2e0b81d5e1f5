import { randomUUID } from "node:crypto";
import { describeIntegration, REDIS_TARGETS, uniquePrefix } from "@phaselock/testkit";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { type BusStatus, type ChangeBus, MemoryBus } from "./bus.ts";
import type { ChangeHint } from "./changes.ts";
import { RedisBus, type RedisRole } from "./redis-bus.ts";
import { createRedisClient, isCluster, type RedisClient, taggedKey } from "./redis-client.ts";
import { contest, eventually, msg, revoke } from "./test-fixtures.ts";

/** Subscribes and records everything the bus reports. */
function record(bus: ChangeBus) {
  const messages: ChangeHint[] = [];
  const statuses: BusStatus[] = [];
  const unsubscribe = bus.subscribe({
    onMessage: (m) => void messages.push(m),
    onStatus: (s) => statuses.push(s),
  });
  return { messages, statuses, unsubscribe, count: (s: BusStatus) => statuses.filter((x) => x === s).length };
}

const versions = (ms: ChangeHint[]) => ms.map((m) => m.version);

describe("MemoryBus", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("delivers every message, in order, to every subscriber", async () => {
    const bus = new MemoryBus({ heartbeatMs: 0 });
    const a = record(bus);
    const b = record(bus);
    for (let v = 1; v <= 20; v++) await bus.publish(revoke(v, `lnk_${v}`));
    expect(versions(a.messages)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(b.messages).toEqual(a.messages);
    await bus.close();
  });

  it("carries only the version (a hint), each subscriber its own copy", async () => {
    const bus = new MemoryBus({ heartbeatMs: 0 });
    const a = record(bus);
    const b = record(bus);
    const sent = msg(1, { type: "contest", contest: contest() });
    await bus.publish(sent);
    expect(a.messages[0]).toEqual({ version: 1 });
    expect(a.messages[0]).not.toBe(sent);
    expect(a.messages[0]).not.toBe(b.messages[0]);
    await bus.close();
  });

  it("reports connected on subscribe, heartbeats, and disconnected on close", async () => {
    const bus = new MemoryBus({ heartbeatMs: 0 });
    const a = record(bus);
    bus.heartbeat();
    await bus.close();
    expect(a.statuses).toEqual(["connected", "heartbeat", "disconnected"]);
    await expect(bus.publish(revoke(1, "lnk_1"))).rejects.toThrow(/closed/);
  });

  it("heartbeats on its timer", async () => {
    vi.useFakeTimers();
    const bus = new MemoryBus({ heartbeatMs: 1000 });
    const a = record(bus);
    vi.advanceTimersByTime(3000);
    expect(a.count("heartbeat")).toBe(3);
    await bus.close();
    vi.advanceTimersByTime(3000);
    expect(a.count("heartbeat")).toBe(3);
  });

  it("stops delivering after unsubscribe", async () => {
    const bus = new MemoryBus({ heartbeatMs: 0 });
    const a = record(bus);
    await bus.publish(revoke(1, "lnk_1"));
    a.unsubscribe();
    await bus.publish(revoke(2, "lnk_2"));
    expect(versions(a.messages)).toEqual([1]);
    await bus.close();
  });

  it("refuses to publish a malformed message", async () => {
    const bus = new MemoryBus({ heartbeatMs: 0 });
    const a = record(bus);
    await expect(bus.publish({ version: -1 })).rejects.toThrow(TypeError);
    expect(a.messages).toEqual([]);
    await bus.close();
  });
});

for (const target of REDIS_TARGETS)
  describeIntegration(`RedisBus (${target.name})`, target.needs, () => {
    const TEST_REDIS_URL = target.url;
    const cluster = target.name === "redis-cluster";
    const NOWHERE = cluster ? "redis+cluster://127.0.0.1:1" : "redis://127.0.0.1:1";
    const changesOf = (prefix: string) =>
      cluster ? taggedKey(prefix, "feed", ":changes") : `${prefix}changes`;
    const heartbeatOf = (prefix: string) =>
      cluster ? taggedKey(prefix, "feed", ":heartbeat") : `${prefix}heartbeat`;
    const subscriberOptions = (role: RedisRole) =>
      role === "subscriber" ? { autoResubscribe: false, enableOfflineQueue: true } : {};
    const clusterOptions = (role: RedisRole) => (role === "subscriber" ? { shardedSubscribers: true } : {});
    const buses: ChangeBus[] = [];
    let raw: RedisClient;

    beforeAll(() => {
      raw = createRedisClient(TEST_REDIS_URL, { enableOfflineQueue: true }, { enableOfflineQueue: true });
    });
    afterAll(async () => {
      await Promise.all(buses.map((b) => b.close()));
      await raw.quit();
    });

    const bus = (opts: Partial<ConstructorParameters<typeof RedisBus>[0]> & { prefix: string }) => {
      const b = new RedisBus({ url: TEST_REDIS_URL, heartbeatMs: 50, ...opts });
      buses.push(b);
      return b;
    };

    it("uses sharded pub/sub on a cluster, both channels on one slot, plain pub/sub on one Redis", async () => {
      const prefix = uniquePrefix("bus");
      const b = new RedisBus({ url: TEST_REDIS_URL, prefix });
      buses.push(b);
      expect(b.channels).toEqual({ changes: changesOf(prefix), heartbeat: heartbeatOf(prefix) });
      expect(b.channels.changes.startsWith(prefix)).toBe(true);
      if (isCluster(raw)) {
        const slots = await Promise.all(
          [b.channels.changes, b.channels.heartbeat].map((c) => raw.cluster("KEYSLOT", c)),
        );
        expect(slots[0]).toBe(slots[1]);
        // Heard only by shard subscribers: a plain PUBLISH on the cluster reaches nobody of ours.
        const a = record(b);
        await eventually(() => expect(a.statuses).toContain("connected"));
        await raw.publish(b.channels.changes, JSON.stringify({ version: 9 }));
        await raw.spublish(b.channels.changes, JSON.stringify({ version: 10 }));
        await eventually(() => expect(a.messages).toEqual([{ version: 10 }]));
      }
    });

    it("delivers hints in order to another instance, nothing of the change on the wire", async () => {
      const prefix = uniquePrefix("bus");
      const publisher = bus({ prefix });
      const sub = record(bus({ prefix }));
      await eventually(() => expect(sub.statuses).toContain("connected"));
      const sent = [msg(1, { type: "contest", contest: contest() })];
      for (let v = 2; v <= 50; v++) sent.push(revoke(v, `lnk_${v}`));
      await Promise.all(sent.map((m) => publisher.publish(m)));
      await eventually(() => expect(sub.messages).toHaveLength(50));
      expect(sub.messages).toEqual(sent.map((m) => ({ version: m.version })));
    });

    it("keeps instances on different prefixes apart", async () => {
      const a = record(bus({ prefix: uniquePrefix("bus") }));
      const other = bus({ prefix: uniquePrefix("bus") });
      await eventually(() => expect(a.statuses).toContain("connected"));
      const b = record(other);
      await eventually(() => expect(b.statuses).toContain("connected"));
      await other.publish(revoke(1, "lnk_1"));
      await eventually(() => expect(b.messages).toHaveLength(1));
      expect(a.messages).toEqual([]);
    });

    it("reports a heartbeat when its own round trip succeeds", async () => {
      const a = record(bus({ prefix: uniquePrefix("bus") }));
      await eventually(() => expect(a.count("heartbeat")).toBeGreaterThanOrEqual(3));
      expect(a.statuses[0]).toBe("connected");
    });

    it("counts only its own heartbeats: a bus that cannot publish never reports one", async () => {
      const prefix = uniquePrefix("bus");
      // Subscriber on the real Redis, publisher on a port where nothing listens.
      const brokenPublisher = bus({
        prefix,
        createClient: (role: RedisRole) =>
          createRedisClient(
            role === "publisher" ? NOWHERE : TEST_REDIS_URL,
            subscriberOptions(role),
            clusterOptions(role),
          ),
      });
      const broken = record(brokenPublisher);
      await eventually(() => expect(broken.statuses).toContain("connected"));
      const healthy = record(bus({ prefix }));
      // The healthy bus's heartbeats travel on the same channel the broken one listens to.
      await eventually(() => expect(healthy.count("heartbeat")).toBeGreaterThanOrEqual(5));
      expect(broken.count("heartbeat")).toBe(0);
      await expect(brokenPublisher.publish(revoke(1, "lnk_1"))).rejects.toThrow();
    });

    it("reports a malformed message as a gap", async () => {
      const prefix = uniquePrefix("bus");
      const a = record(bus({ prefix }));
      await eventually(() => expect(a.statuses).toContain("connected"));
      const junk = '{"change":{"type":"revocation"}}';
      await (isCluster(raw) ? raw.spublish(changesOf(prefix), junk) : raw.publish(changesOf(prefix), junk));
      await eventually(() => expect(a.statuses).toContain("gap"));
      expect(a.messages).toEqual([]);
    });

    it("resubscribes after the server drops its connection, reporting disconnected then connected", async () => {
      const prefix = uniquePrefix("bus");
      const name = `pl-test-sub-${randomUUID()}`;
      const subscriber = bus({
        prefix,
        createClient: (role: RedisRole) =>
          createRedisClient(
            TEST_REDIS_URL,
            { connectionName: role === "subscriber" ? name : undefined, ...subscriberOptions(role) },
            clusterOptions(role),
          ),
      });
      const a = record(subscriber);
      await eventually(() => expect(a.statuses).toContain("connected"));

      // On a cluster, the subscription lives on the master that holds the feed's slot.
      let killed = 0;
      for (const node of isCluster(raw) ? raw.nodes("master") : [raw]) {
        const list = (await node.client("LIST")) as string;
        // The connection that holds the subscription (ioredis names a shard subscriber after ours).
        for (const line of list.split("\n").filter((l) => l.includes(name) && / s?sub=[1-9]/.test(l))) {
          await node.client("KILL", "ID", line.match(/^id=(\d+)/)![1]!);
          killed++;
        }
      }
      expect(killed).toBeGreaterThan(0);

      await eventually(() =>
        expect(a.statuses.slice(1)).toEqual(expect.arrayContaining(["disconnected", "connected"])),
      );
      const afterDrop = a.statuses.indexOf("disconnected");
      expect(a.statuses.indexOf("connected", afterDrop)).toBeGreaterThan(afterDrop);
      await subscriber.publish(revoke(1, "lnk_1"));
      await eventually(() => expect(versions(a.messages)).toEqual([1]));
    });

    it("starts over when its heartbeats stop coming back on a connection that looks up", async () => {
      const prefix = uniquePrefix("bus");
      const errors: unknown[] = [];
      let swallow = true;
      const b = bus({
        prefix,
        onError: (e) => errors.push(e),
        createClient: (role: RedisRole) => {
          const c = createRedisClient(TEST_REDIS_URL, subscriberOptions(role), clusterOptions(role));
          if (role === "publisher") {
            // Like a half-open socket: heartbeats are written and never heard of again.
            const method = isCluster(c) ? "spublish" : "publish";
            const publish = c[method].bind(c) as (channel: string, message: string) => Promise<unknown>;
            c[method] = ((channel: string, message: string) =>
              swallow && channel === heartbeatOf(prefix)
                ? new Promise<number>(() => {})
                : publish(channel, message)) as typeof c.publish;
          }
          return c;
        },
      });
      const a = record(b);
      await eventually(() => expect(a.statuses).toContain("connected"));
      await eventually(() => expect(a.count("connected")).toBeGreaterThanOrEqual(2));
      expect(a.statuses.slice(0, 3)).toEqual(["connected", "disconnected", "connected"]);
      expect(String(errors[0])).toMatch(/heartbeats stopped/);
      swallow = false;
      await eventually(() => expect(a.count("heartbeat")).toBeGreaterThanOrEqual(1));
    });

    // Only a cluster client has shard subscribers to replace.
    if (cluster)
      it("replaces a cluster subscriber whose shard subscription keeps failing", async () => {
        const prefix = uniquePrefix("bus");
        const errors: unknown[] = [];
        let subscribers = 0;
        const b = bus({
          prefix,
          onError: (e) => errors.push(e),
          createClient: (role: RedisRole) => {
            const c = createRedisClient(TEST_REDIS_URL, subscriberOptions(role), clusterOptions(role));
            // The first subscriber cannot subscribe, as a cluster client holding a stale slot map.
            if (role === "subscriber" && ++subscribers === 1)
              c.ssubscribe = (async () => {
                throw new Error("No sharded subscriber for slot");
              }) as typeof c.ssubscribe;
            return c;
          },
        });
        const a = record(b);
        await eventually(() => expect(a.statuses).toContain("connected"));
        expect(subscribers).toBe(2);
        expect(errors.length).toBeGreaterThanOrEqual(5);
        expect(a.statuses.indexOf("disconnected")).toBeLessThan(a.statuses.indexOf("connected"));
        await b.publish(revoke(1, "lnk_1"));
        await eventually(() => expect(versions(a.messages)).toEqual([1]));
      });

    it("isolates a throwing listener from the others", async () => {
      const prefix = uniquePrefix("bus");
      const errors: unknown[] = [];
      const b = bus({ prefix, onError: (e) => errors.push(e) });
      b.subscribe({
        onMessage: () => {
          throw new Error("listener bug");
        },
        onStatus: () => {},
      });
      const a = record(b);
      await eventually(() => expect(a.statuses).toContain("connected"));
      await b.publish(revoke(1, "lnk_1"));
      await b.publish(revoke(2, "lnk_2"));
      await eventually(() => expect(versions(a.messages)).toEqual([1, 2]));
      expect(errors).toHaveLength(2);
    });

    it("refuses to publish a malformed message", async () => {
      const b = bus({ prefix: uniquePrefix("bus") });
      await expect(b.publish({ version: 1.5 })).rejects.toThrow(TypeError);
    });
  });

describe("RedisBus against a Redis that is not there", () => {
  it("fails publishes fast and never reports a heartbeat", async () => {
    let attempts = 0;
    const down = new RedisBus({
      heartbeatMs: 20,
      prefix: uniquePrefix("bus"),
      createClient: (role) => {
        const c = createRedisClient("redis://127.0.0.1:1");
        if (role === "publisher") {
          const publish = c.publish.bind(c);
          c.publish = ((...args: Parameters<typeof publish>) => {
            attempts++;
            return publish(...args);
          }) as typeof c.publish;
        }
        return c;
      },
    });
    try {
      const a = record(down);
      const started = Date.now();
      await expect(down.publish(revoke(1, "lnk_1"))).rejects.toThrow();
      expect(Date.now() - started).toBeLessThan(500);
      // Wait on events, not on time: several heartbeats attempted, and the outage reported.
      await eventually(() => expect(attempts).toBeGreaterThanOrEqual(6));
      await eventually(() => expect(a.statuses).toContain("disconnected"));
      expect(a.count("heartbeat")).toBe(0);
      expect(a.statuses).not.toContain("connected");
      expect(a.count("disconnected")).toBe(1);
    } finally {
      await down.close();
    }
  });

  it("needs a url or a client factory", () => {
    expect(() => new RedisBus({})).toThrow(TypeError);
  });
});
