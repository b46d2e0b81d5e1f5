import { FakeClock } from "@phaselock/core";
import { describe, expect, it } from "vitest";
import { MemoryBus } from "./bus.ts";
import { LoggedFeed } from "./logged-feed.ts";
import { PolicyState } from "./policy-state.ts";
import { claims, memoryLog, revoke, snapshot, T0 } from "./test-fixtures.ts";

/** A gateway's state following a log through a MemoryBus, as `createGateway` wires it. */
function follower(opts: { log?: ReturnType<typeof memoryLog>; failing?: () => boolean } = {}) {
  const bus = new MemoryBus({ heartbeatMs: 0 });
  const clock = new FakeClock(T0);
  const log = opts.log ?? memoryLog(1);
  let loads = 0;
  const errors: unknown[] = [];
  const feed = new LoggedFeed({
    bus,
    log: {
      since: async (after) => {
        if (opts.failing?.()) throw new Error("database unreachable");
        return log.since(after);
      },
    },
    position: () => state.status().version,
    pollMs: false,
    onError: (e) => errors.push(e),
  });
  const state = new PolicyState({
    source: {
      load: async () => {
        loads++;
        const s = snapshot(1);
        // As Postgres would: the snapshot holds every logged change.
        for (const r of log.rows) if (r.version > s.version) s.version = r.version;
        return s;
      },
    },
    bus: feed,
    clock,
  });
  return { bus, clock, log, feed, state, errors, loads: () => loads };
}

describe("LoggedFeed", () => {
  it("applies changes from the log, never from the message", async () => {
    const f = follower();
    await f.state.start();
    // A forged message naming a version far ahead: nothing of it is applied, nothing blocks.
    await f.bus.publish({ version: 1_000_000 });
    await f.feed.catchUp();
    expect(f.state.status().version).toBe(1);

    f.log.append(revoke(2, "lnk_2"));
    await f.bus.publish({ version: 2 });
    await f.feed.catchUp();
    expect(f.state.status().version).toBe(2);
    expect(f.state.revocations.covers(claims("lnk_2"))).toBeDefined();
  });

  it("reloads in full when the log has a hole or an unreadable row", async () => {
    const f = follower();
    await f.state.start();
    const before = f.loads();
    f.log.bumpWithoutRow();
    await f.feed.catchUp();
    await f.state.reload();
    expect(f.loads()).toBeGreaterThan(before);

    const again = f.loads();
    f.log.rows.push({ version: 3, change: { type: "revocation", revocation: { scope: "link" } } });
    f.log.bumpWithoutRow();
    await f.feed.catchUp();
    await f.state.reload();
    expect(f.loads()).toBeGreaterThan(again);
  });

  it("passes a heartbeat on only after the log was read: forged heartbeats alone keep nothing fresh", async () => {
    let down = false;
    const f = follower({ failing: () => down });
    await f.state.start();
    f.clock.advance(10_000);
    expect(f.state.isFresh()).toBe(false);
    f.bus.heartbeat();
    await f.feed.catchUp();
    expect(f.state.isFresh()).toBe(true);

    down = true;
    f.clock.advance(10_000);
    f.bus.heartbeat();
    await f.feed.catchUp();
    expect(f.state.isFresh()).toBe(false);
    expect(f.errors.length).toBeGreaterThan(0);
  });
});
