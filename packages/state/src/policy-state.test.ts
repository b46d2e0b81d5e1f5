import { FakeClock, PhaselockError } from "@phaselock/core";
import type { PolicySnapshot } from "@phaselock/policy";
import { describeIntegration, REDIS_TARGETS, uniquePrefix } from "@phaselock/testkit";
import { afterAll, describe, expect, it, vi } from "vitest";
import { type BusListener, type BusStatus, type ChangeBus, MemoryBus } from "./bus.ts";
import type { ChangeMessage, PolicyChange } from "./changes.ts";
import { LoggedFeed } from "./logged-feed.ts";
import { PolicyState, type PolicyStateOptions } from "./policy-state.ts";
import { RedisBus } from "./redis-bus.ts";
import {
  campaign,
  claims,
  contest,
  deferred,
  eventually,
  linkRevocation,
  memoryLog,
  msg,
  revoke,
  snapshot,
  T0,
} from "./test-fixtures.ts";

/** A bus the test drives by hand: deliver messages and statuses exactly when it wants. */
class ManualBus implements ChangeBus {
  listener: BusListener | undefined;
  readonly calls: string[] = [];
  async publish(m: ChangeMessage): Promise<void> {
    this.deliver(m);
  }
  subscribe(l: BusListener): () => void {
    this.calls.push("subscribe");
    this.listener = l;
    l.onStatus("connected"); // as a real bus does once its subscription is live
    return () => {
      this.listener = undefined;
    };
  }
  async close(): Promise<void> {}
  deliver(...ms: ChangeMessage[]): void {
    for (const m of ms) this.listener?.onMessage(m);
  }
  status(s: BusStatus): void {
    this.listener?.onStatus(s);
  }
}

/** Lets pending promise callbacks (a resolved load) run. */
const flush = () => new Promise<void>((r) => setImmediate(r));

/** A source whose loads the test answers one by one. */
function heldSource(bus?: ManualBus) {
  const loads: ReturnType<typeof deferred<PolicySnapshot>>[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  return {
    loads,
    get maxInFlight() {
      return maxInFlight;
    },
    load: () => {
      bus?.calls.push("load");
      const d = deferred<PolicySnapshot>();
      loads.push(d);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      return d.promise.finally(() => {
        inFlight--;
      });
    },
  };
}

function setup(opts: Partial<PolicyStateOptions> & { initial?: PolicySnapshot } = {}) {
  const bus = new ManualBus();
  const clock = new FakeClock(T0);
  const load = vi.fn(async () => opts.initial ?? snapshot(1));
  const changes: [PolicyChange["type"], number][] = [];
  const errors: unknown[] = [];
  const state = new PolicyState({
    source: { load },
    bus,
    clock,
    onChange: (c, v) => changes.push([c.type, v]),
    onError: (e) => errors.push(e),
    ...opts,
  });
  return { bus, clock, load, state, changes, errors };
}

describe("PolicyState", () => {
  it("subscribes before it loads, so nothing published in between is missed", async () => {
    const bus = new ManualBus();
    const source = heldSource(bus);
    const state = new PolicyState({ source, bus, clock: new FakeClock(T0) });
    const started = state.start();
    expect(bus.calls).toEqual(["subscribe", "load"]);
    source.loads[0]!.resolve(snapshot(7));
    await started;
    expect(state.status()).toEqual({ version: 7, fresh: true, lastConfirmedAt: T0 });
  });

  it("applies the closures a contest change carries to the snapshot", async () => {
    const { bus, state } = setup();
    await state.start();
    const closedAt = new Date(T0.getTime() - 1000);
    bus.deliver(
      msg(2, {
        type: "contest",
        contest: contest(),
        closures: [{ contestId: "leadership-2020", phase: "ballot", closedAt }],
      }),
    );
    expect(state.snapshot.closures.get("leadership-2020")).toEqual(new Map([["ballot", closedAt]]));
  });

  it("is unavailable before the first load", () => {
    const { state } = setup();
    expect(() => state.snapshot).toThrow(PhaselockError);
    expect(state.status()).toEqual({ version: null, fresh: false, lastConfirmedAt: null });
    expect(state.isFresh()).toBe(false);
  });

  it("applies in-order messages of every kind and tells listeners", async () => {
    const { bus, state, changes, load } = setup();
    await state.start();
    expect(state.revocations.covers(claims("lnk_a"))).toBeUndefined();

    const renamed = { ...contest(), name: "Renamed" };
    bus.deliver(
      revoke(2, "lnk_a"),
      msg(3, { type: "contest", contest: renamed }),
      msg(4, { type: "campaign", campaign: { ...campaign("long-bailey-2020"), limits: {} } }),
      msg(5, { type: "entitlement", campaignId: "starmer-2020", phase: "ballot", scopes: ["members:read"] }),
      msg(6, {
        type: "entitlement",
        campaignId: "long-bailey-2020",
        phase: "ballot",
        scopes: ["calls:read"],
      }),
      msg(7, { type: "entitlement", campaignId: "long-bailey-2020", phase: "ballot", scopes: null }),
      msg(8, { type: "signing-key", kid: "k2", publicJwk: { kty: "OKP", crv: "Ed25519", x: "x" } }),
      msg(9, { type: "api-key-deleted", id: "key_1" }),
      msg(10, { type: "link-suspended", linkId: "lnk_b", reason: "too many devices" }),
      // A stolen key's revocation reaches the key ring from the feed, not only after a reload.
      msg(11, { type: "signing-key-revoked", kid: "k2", reason: "stolen" }),
    );

    const s = state.snapshot;
    expect(s.version).toBe(11);
    expect(state.revocations.covers(claims("lnk_a"))?.id).toBe("rev_lnk_a");
    expect(state.revocations.size).toBe(1);
    // The index is the only copy kept: no list of revocation objects beside it.
    expect(s.revocations).toEqual([]);
    expect(s.contests.get("leadership-2020")?.name).toBe("Renamed");
    expect(s.campaigns.has("long-bailey-2020")).toBe(true);
    expect(s.entitlements.get("starmer-2020")?.get("ballot")).toEqual(new Set(["members:read"]));
    expect(s.entitlements.has("long-bailey-2020")).toBe(false);
    // A suspension is policy: it lives in the snapshot, where decideAccess reads it.
    expect(s.suspended).toEqual(new Set(["lnk_b"]));
    expect(changes).toEqual([
      ["revocation", 2],
      ["contest", 3],
      ["campaign", 4],
      ["entitlement", 5],
      ["entitlement", 6],
      ["entitlement", 7],
      ["signing-key", 8],
      ["api-key-deleted", 9],
      ["link-suspended", 10],
      ["signing-key-revoked", 11],
    ]);
    expect(load).toHaveBeenCalledTimes(1);
  });

  it("ignores messages that are not newer than its version", async () => {
    const { bus, state, changes, load } = setup({ initial: snapshot(5) });
    await state.start();
    bus.deliver(revoke(5, "lnk_5"), revoke(3, "lnk_3"), revoke(0, "lnk_0"));
    bus.deliver(revoke(6, "lnk_6"), revoke(6, "lnk_6_again"));
    expect(state.snapshot.version).toBe(6);
    expect(state.revocations.size).toBe(1);
    expect(state.revocations.covers(claims("lnk_6"))).toBeDefined();
    expect(state.revocations.covers(claims("lnk_6_again"))).toBeUndefined();
    expect(changes).toEqual([["revocation", 6]]);
    expect(load).toHaveBeenCalledTimes(1);
  });

  it("reloads on a gap, and the missed revocation takes effect", async () => {
    const { bus, state, load, changes } = setup();
    await state.start();
    // Version 2 (revoking lnk_2) never arrives; version 3 does.
    load.mockResolvedValueOnce(snapshot(2, [linkRevocation("lnk_2")]));
    bus.deliver(revoke(3, "lnk_3"));
    expect(state.revocations.covers(claims("lnk_3"))).toBeUndefined(); // not applied across the gap
    await flush();
    expect(load).toHaveBeenCalledTimes(2);
    expect(state.snapshot.version).toBe(3);
    expect(state.revocations.covers(claims("lnk_2"))?.id).toBe("rev_lnk_2");
    expect(state.revocations.covers(claims("lnk_3"))?.id).toBe("rev_lnk_3");
    expect(changes).toEqual([["revocation", 3]]);
  });

  it("coalesces: several gaps during one reload cause one load", async () => {
    const source = heldSource();
    const bus = new ManualBus();
    const state = new PolicyState({ source, bus, clock: new FakeClock(T0) });
    const started = state.start();
    source.loads[0]!.resolve(snapshot(1));
    await started;

    bus.deliver(revoke(3, "lnk_3"));
    bus.deliver(revoke(5, "lnk_5"));
    bus.status("gap");
    bus.deliver(revoke(4, "lnk_4"));
    expect(source.loads).toHaveLength(2);
    source.loads[1]!.resolve(snapshot(2));
    await flush();
    // The explicit `gap` asked for one more reload after the running one.
    expect(source.loads).toHaveLength(3);
    source.loads[2]!.resolve(snapshot(2));
    await flush();
    expect(source.loads).toHaveLength(3);
    expect(source.maxInFlight).toBe(1);
    expect(state.snapshot.version).toBe(5);
    for (const id of ["lnk_3", "lnk_4", "lnk_5"]) expect(state.revocations.covers(claims(id))).toBeDefined();
  });

  it("does not reload twice for gaps the first reload closes", async () => {
    const source = heldSource();
    const bus = new ManualBus();
    const state = new PolicyState({ source, bus, clock: new FakeClock(T0) });
    const started = state.start();
    source.loads[0]!.resolve(snapshot(1));
    await started;
    bus.deliver(revoke(3, "lnk_3"), revoke(4, "lnk_4"), revoke(6, "lnk_6"), revoke(5, "lnk_5"));
    expect(source.loads).toHaveLength(2);
    source.loads[1]!.resolve(snapshot(2));
    await flush();
    expect(source.loads).toHaveLength(2);
    expect(state.snapshot.version).toBe(6);
    expect(state.isFresh()).toBe(true);
  });

  it("reloads again when messages kept during a reload still leave a gap", async () => {
    const source = heldSource();
    const bus = new ManualBus();
    const state = new PolicyState({ source, bus, clock: new FakeClock(T0) });
    const started = state.start();
    source.loads[0]!.resolve(snapshot(1));
    await started;
    bus.deliver(revoke(5, "lnk_5"));
    source.loads[1]!.resolve(snapshot(2)); // the source has not caught up to 4 yet
    await flush();
    expect(source.loads).toHaveLength(3);
    source.loads[2]!.resolve(snapshot(4));
    await flush();
    expect(state.snapshot.version).toBe(5);
    expect(state.revocations.covers(claims("lnk_5"))).toBeDefined();
  });

  it("applies messages that arrive during the first load on top of it", async () => {
    const source = heldSource();
    const bus = new ManualBus();
    const state = new PolicyState({ source, bus, clock: new FakeClock(T0) });
    const started = state.start();
    bus.deliver(revoke(2, "lnk_2"), revoke(3, "lnk_3"), revoke(1, "lnk_1"));
    source.loads[0]!.resolve(snapshot(1, [linkRevocation("lnk_1")]));
    await started;
    expect(source.loads).toHaveLength(1);
    expect(state.snapshot.version).toBe(3);
    expect(state.revocations.size).toBe(3);
    for (const id of ["lnk_1", "lnk_2", "lnk_3"]) expect(state.revocations.covers(claims(id))).toBeDefined();
  });

  it("keeps applying in-order messages while a reload runs, without applying them twice", async () => {
    const source = heldSource();
    const bus = new ManualBus();
    const changes: number[] = [];
    const state = new PolicyState({
      source,
      bus,
      clock: new FakeClock(T0),
      onChange: (_, v) => changes.push(v),
    });
    const started = state.start();
    source.loads[0]!.resolve(snapshot(1));
    await started;

    bus.status("connected");
    expect(source.loads).toHaveLength(2);
    bus.deliver(revoke(2, "lnk_2"));
    // A revocation takes effect at once, not only when the reload finishes.
    expect(state.revocations.covers(claims("lnk_2"))).toBeDefined();
    source.loads[1]!.resolve(snapshot(2, [linkRevocation("lnk_2")]));
    await flush();
    expect(state.snapshot.version).toBe(2);
    expect(state.revocations.size).toBe(1);
    expect(changes).toEqual([2]);
  });

  it("replays messages a reload started too early to see", async () => {
    const source = heldSource();
    const bus = new ManualBus();
    const state = new PolicyState({ source, bus, clock: new FakeClock(T0) });
    const started = state.start();
    source.loads[0]!.resolve(snapshot(1));
    await started;
    bus.status("connected");
    bus.deliver(revoke(2, "lnk_2"), revoke(3, "lnk_3"));
    source.loads[1]!.resolve(snapshot(1)); // read before 2 and 3 committed
    await flush();
    expect(state.snapshot.version).toBe(3);
    expect(state.revocations.covers(claims("lnk_2"))).toBeDefined();
    expect(state.revocations.covers(claims("lnk_3"))).toBeDefined();
  });

  it("reloads on (re)connect, and once more when it reconnects during a reload", async () => {
    const source = heldSource();
    const bus = new ManualBus();
    const state = new PolicyState({ source, bus, clock: new FakeClock(T0) });
    const started = state.start();
    source.loads[0]!.resolve(snapshot(1));
    await started;

    bus.status("connected");
    expect(source.loads).toHaveLength(2);
    bus.status("disconnected");
    bus.status("connected");
    bus.status("connected");
    expect(source.loads).toHaveLength(2);
    source.loads[1]!.resolve(snapshot(2));
    await flush();
    expect(source.loads).toHaveLength(3);
    source.loads[2]!.resolve(snapshot(3));
    await flush();
    expect(source.loads).toHaveLength(3);
    expect(source.maxInFlight).toBe(1);
    expect(state.snapshot.version).toBe(3);
  });

  it("never steps back to an older snapshot than the feed has brought it to", async () => {
    const { bus, state, load, errors } = setup();
    await state.start();
    bus.deliver(revoke(2, "lnk_2"), revoke(3, "lnk_3"));
    load.mockResolvedValueOnce(snapshot(1));
    await expect(state.reload()).rejects.toThrow(/behind/);
    expect(state.snapshot.version).toBe(3);
    expect(state.revocations.covers(claims("lnk_3"))).toBeDefined();
    expect(errors).toEqual([]);
  });

  it("reloads when the bus reports an unreadable message", async () => {
    const { bus, state, load } = setup();
    await state.start();
    bus.status("gap");
    await flush();
    expect(load).toHaveBeenCalledTimes(2);
  });

  describe("freshness", () => {
    it("goes stale after staleAfterMs without confirmation, and a heartbeat makes it fresh again", async () => {
      const { bus, state, clock } = setup({ staleAfterMs: 5000 });
      await state.start();
      expect(state.isFresh()).toBe(true);
      clock.advance(5000);
      expect(state.isFresh()).toBe(true);
      clock.advance(1);
      expect(state.isFresh()).toBe(false);
      expect(state.status()).toMatchObject({ fresh: false, lastConfirmedAt: T0 });
      bus.status("heartbeat");
      expect(state.isFresh()).toBe(true);
      expect(state.lastConfirmedAt).toEqual(clock.now());
    });

    it("defaults to 5 s", async () => {
      const { state, clock } = setup({ staleAfterMs: undefined });
      await state.start();
      clock.advance(5001);
      expect(state.isFresh()).toBe(false);
    });

    it("is confirmed by an applied message", async () => {
      const { bus, state, clock } = setup();
      await state.start();
      clock.advance(6000);
      bus.deliver(revoke(2, "lnk_2"));
      expect(state.isFresh()).toBe(true);
    });

    it("a disconnect alone does not refresh it", async () => {
      const { bus, state, clock } = setup();
      await state.start();
      clock.advance(6000);
      bus.status("disconnected");
      expect(state.isFresh()).toBe(false);
    });

    it("a reload while the feed is down applies the source but confirms nothing (fail closed)", async () => {
      const { bus, state, clock, load } = setup();
      await state.start();
      bus.status("disconnected");
      clock.advance(6000);
      load.mockResolvedValueOnce(snapshot(5));
      await state.reload(); // e.g. the version poller saw a newer version in Postgres
      expect(state.snapshot.version).toBe(5);
      expect(state.isFresh()).toBe(false);
      load.mockResolvedValueOnce(snapshot(5));
      bus.status("connected"); // reconnecting reloads, and now confirms
      await flush();
      expect(state.isFresh()).toBe(true);
    });

    it("is not confirmed by heartbeats while a gap is open", async () => {
      const source = heldSource();
      const bus = new ManualBus();
      const clock = new FakeClock(T0);
      const state = new PolicyState({ source, bus, clock });
      const started = state.start();
      source.loads[0]!.resolve(snapshot(1));
      await started;
      clock.advance(4000);
      bus.deliver(revoke(3, "lnk_3")); // a gap; its reload hangs
      bus.status("heartbeat");
      clock.advance(1001);
      expect(state.isFresh()).toBe(false);
      source.loads[1]!.resolve(snapshot(2));
      await flush();
      expect(state.isFresh()).toBe(true);
      expect(state.lastConfirmedAt).toEqual(clock.now());
    });

    it("a failing reload keeps the old snapshot but confirms nothing; a heartbeat retries it", async () => {
      const { bus, state, clock, load, errors } = setup();
      await state.start();
      clock.advance(3000);
      load.mockRejectedValueOnce(new Error("db down"));
      bus.status("connected");
      await flush();
      expect(errors).toHaveLength(1);
      expect(state.snapshot.version).toBe(1);
      expect(state.lastConfirmedAt).toEqual(T0);
      clock.advance(2001);
      expect(state.isFresh()).toBe(false);

      load.mockRejectedValueOnce(new Error("db still down"));
      bus.status("heartbeat"); // retries rather than confirms
      await flush();
      expect(load).toHaveBeenCalledTimes(3);
      expect(state.isFresh()).toBe(false);

      load.mockResolvedValueOnce(snapshot(4));
      bus.status("heartbeat");
      await flush();
      expect(load).toHaveBeenCalledTimes(4);
      expect(state.snapshot.version).toBe(4);
      expect(state.isFresh()).toBe(true);
    });
  });

  it("rejects start when the first load fails, and recovers on a later heartbeat", async () => {
    const { bus, state, load } = setup();
    load.mockRejectedValueOnce(new Error("db down"));
    await expect(state.start()).rejects.toThrow("db down");
    expect(state.isFresh()).toBe(false);
    bus.status("heartbeat");
    await flush();
    expect(state.snapshot.version).toBe(1);
    expect(state.isFresh()).toBe(true);
  });

  it("runs refreshKeys with every reload, and fails the reload when it fails", async () => {
    const refreshKeys = vi.fn(async () => {});
    const { bus, state, load } = setup({ refreshKeys });
    await state.start();
    expect(refreshKeys).toHaveBeenCalledTimes(1);
    load.mockResolvedValueOnce(snapshot(2));
    bus.deliver(revoke(3, "lnk_3"));
    await flush();
    expect(refreshKeys).toHaveBeenCalledTimes(2);
    expect(state.snapshot.version).toBe(3);

    refreshKeys.mockRejectedValueOnce(new Error("keys unavailable"));
    load.mockResolvedValueOnce(snapshot(9));
    await expect(state.reload()).rejects.toThrow("keys unavailable");
    expect(state.snapshot.version).toBe(3);
  });

  it("keeps going when a change listener throws", async () => {
    const { bus, state, errors } = setup({
      onChange: () => {
        throw new Error("listener bug");
      },
    });
    const seen: number[] = [];
    state.onChange((_, v) => seen.push(v));
    await state.start();
    bus.deliver(revoke(2, "lnk_2"), revoke(3, "lnk_3"));
    expect(state.snapshot.version).toBe(3);
    expect(seen).toEqual([2, 3]);
    expect(errors).toHaveLength(2);
  });

  it("removes a listener, and stops following the feed after stop()", async () => {
    const { bus, state } = setup({ onChange: undefined });
    const seen: number[] = [];
    const off = state.onChange((_, v) => seen.push(v));
    await state.start();
    bus.deliver(revoke(2, "lnk_2"));
    off();
    bus.deliver(revoke(3, "lnk_3"));
    state.stop();
    bus.deliver(revoke(4, "lnk_4"));
    expect(seen).toEqual([2]);
    expect(state.snapshot.version).toBe(3);
    expect(bus.listener).toBeUndefined();
  });

  it("refuses to start twice", async () => {
    const { state } = setup();
    await state.start();
    await expect(state.start()).rejects.toThrow(/already started/);
  });

  it("serves the embedded setup: token service and gateway share one MemoryBus", async () => {
    const bus = new MemoryBus({ heartbeatMs: 0 });
    const clock = new FakeClock(T0);
    const db = { snapshot: snapshot(1) };
    const log = memoryLog(1);
    const source = { load: async () => structuredClone(db.snapshot) };
    const follow = () => {
      const feed = new LoggedFeed({ bus, log, position: () => state.status().version, pollMs: false });
      const state = new PolicyState({ source, bus: feed, clock });
      return { state, feed };
    };
    const tokenService = follow();
    const gateway = follow();
    await Promise.all([tokenService.state.start(), gateway.state.start()]);
    log.append(revoke(2, "lnk_2"));
    await bus.publish({ version: 2 });
    await Promise.all([tokenService.feed.catchUp(), gateway.feed.catchUp()]);
    expect(gateway.state.revocations.covers(claims("lnk_2"))).toBeDefined();
    expect(tokenService.state.revocations.covers(claims("lnk_2"))).toBeDefined();
    clock.advance(10_000);
    expect(gateway.state.isFresh()).toBe(false);
    bus.heartbeat();
    await gateway.feed.catchUp();
    expect(gateway.state.isFresh()).toBe(true);
    await bus.close();
  });
});

for (const target of REDIS_TARGETS)
  describeIntegration(`PolicyState over RedisBus (${target.name})`, target.needs, () => {
    const buses: RedisBus[] = [];
    afterAll(async () => {
      await Promise.all(buses.map((b) => b.close()));
    });

    it("follows another instance's changes and is kept fresh by real heartbeats", async () => {
      const prefix = uniquePrefix("state");
      const publisher = new RedisBus({ url: target.url, prefix, heartbeatMs: 50 });
      const bus = new RedisBus({ url: target.url, prefix, heartbeatMs: 50 });
      buses.push(publisher, bus);
      const clock = new FakeClock(T0);
      const load = vi.fn(async () => snapshot(1));
      const log = memoryLog(1);
      const feed = new LoggedFeed({ bus, log, position: () => state.status().version, pollMs: false });
      const state = new PolicyState({ source: { load }, bus: feed, clock });
      await state.start();
      // The subscription's `connected` comes after subscribe() returns and reloads once more.
      await eventually(() => expect(load).toHaveBeenCalledTimes(2));

      log.append(revoke(2, "lnk_2"));
      // The publisher's own connection may still be opening (a cluster client refuses commands
      // until it knows the slots): a publish that fails is simply tried again, as a hint may be.
      await vi.waitFor(() => publisher.publish({ version: 2 }), { timeout: 5000, interval: 20 });
      await eventually(() => expect(state.revocations.covers(claims("lnk_2"))).toBeDefined());

      clock.advance(60_000);
      expect(state.isFresh()).toBe(false);
      await eventually(() => expect(state.isFresh()).toBe(true));
      state.stop();
    });
  });
