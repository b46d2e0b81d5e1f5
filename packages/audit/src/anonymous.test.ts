import { FakeClock } from "@phaselock/core";
import { describe, expect, it, vi } from "vitest";
import { AnonymousDenialSink, OVERFLOW_CLIENT } from "./anonymous.ts";
import type { AuditEvent } from "./events.ts";
import { MemoryAuditSink } from "./sink.ts";

const setup = (maxClients?: number) => {
  const clock = new FakeClock("2026-01-01T09:00:10Z");
  const inner = new MemoryAuditSink();
  const sink = new AnonymousDenialSink({ sink: inner, clock, sweepMs: 0, maxClients });
  const deny = (ipHash: string | null, reason = "token_missing", route = "unmapped"): AuditEvent => ({
    type: "access",
    at: clock.now(),
    actor: null,
    campaignId: null,
    linkId: null,
    decision: "deny",
    reason,
    data: { route, ipHash },
  });
  return { clock, inner, sink, deny };
};

describe("AnonymousDenialSink", () => {
  it("passes events naming a link, and allowed ones, straight through", async () => {
    const { inner, sink, deny, clock } = setup();
    const named = { ...deny("ip1"), linkId: "lnk_1", actor: "vol-1" } as AuditEvent;
    sink.record(named);
    await sink.recordDurable({ ...named, decision: "allow", reason: null } as AuditEvent);
    sink.record({ type: "audit.dropped", at: clock.now(), data: { count: 1, firstAt: "", lastAt: "" } });
    expect(inner.events).toHaveLength(3);
    expect(sink.held).toBe(0);
  });

  it("writes a client's first anonymous denial of a minute as itself, and folds the rest into one event", async () => {
    const { inner, sink, deny, clock } = setup();
    for (let i = 0; i < 5; i++) sink.record(deny("ip1"));
    clock.advance(30_000);
    sink.record(deny("ip1", "token_invalid", "GET /calls/next"));
    sink.record(deny("ip2"));
    // One refused request is in the log at once, with its own reason.
    expect(inner.events).toEqual(
      [deny("ip1"), deny("ip2")].map((e, i) => ({
        ...e,
        at: i ? clock.now() : new Date("2026-01-01T09:00:10Z"),
      })),
    );
    expect(sink.held).toBe(5);
    // The next minute's first denial (itself written at once) writes the ended minute's aggregate.
    clock.advance(30_000);
    sink.record(deny("ip1"));
    expect(inner.events.slice(2)).toEqual([
      {
        type: "access.anonymous_denied",
        at: new Date("2026-01-01T09:00:40Z"),
        decision: "deny",
        reason: "anonymous",
        data: {
          ipHash: "ip1",
          minute: "2026-01-01T09:00:00.000Z",
          count: 5,
          reasons: { token_missing: 4, token_invalid: 1 },
          routes: { unmapped: 4, "GET /calls/next": 1 },
          firstAt: "2026-01-01T09:00:10.000Z",
          lastAt: "2026-01-01T09:00:40.000Z",
        },
      },
      expect.objectContaining({
        type: "access",
        reason: "token_missing",
        data: expect.objectContaining({ ipHash: "ip1" }),
      }),
    ]);
    // ip2 knocked once: nothing to fold. flush writes the current minute's aggregates (none).
    await sink.flush();
    expect(inner.events).toHaveLength(4);
    expect(sink.held).toBe(0);
  });

  it("is bounded: at most two events per client a minute; clients past maxClients share one overflow bucket, all counted", async () => {
    const { inner, sink, deny } = setup(3);
    for (let round = 0; round < 3; round++) for (let i = 0; i < 100; i++) sink.record(deny(`ip${i}`));
    await sink.close();
    // ip0..ip2 and the overflow: each its first denial as itself, then one aggregate.
    expect(inner.events).toHaveLength(8);
    const folded = inner.events.filter((e) => e.type === "access.anonymous_denied");
    const data = folded.map((e) => e.data as { ipHash: string; count: number });
    expect(data.at(-1)).toEqual(expect.objectContaining({ ipHash: OVERFLOW_CLIENT, count: 97 * 3 - 1 }));
    expect(data.reduce((n, d) => n + d.count, 0) + (inner.events.length - folded.length)).toBe(300);
  });

  it("the sweep timer writes an ended minute without a new denial", () => {
    vi.useFakeTimers();
    try {
      const clock = new FakeClock("2026-01-01T09:00:10Z");
      const inner = new MemoryAuditSink();
      const sink = new AnonymousDenialSink({ sink: inner, clock, sweepMs: 1000 });
      const denial = {
        type: "access",
        at: clock.now(),
        decision: "deny",
        reason: "token_missing",
        data: { route: "unmapped", ipHash: "ip1" },
      } as AuditEvent;
      sink.record(denial);
      sink.record(denial);
      vi.advanceTimersByTime(1000);
      expect(inner.events.map((e) => e.type)).toEqual(["access"]);
      clock.advance(60_000);
      vi.advanceTimersByTime(1000);
      expect(inner.events.map((e) => e.type)).toEqual(["access", "access.anonymous_denied"]);
      sink.stop();
    } finally {
      vi.useRealTimers();
    }
  });

  it("after stop(), a late anonymous denial (a request still running past the drain) goes straight on, never held", () => {
    const { inner, sink, deny } = setup();
    sink.record(deny("ip1"));
    sink.record(deny("ip1"));
    sink.stop();
    expect(inner.events.map((e) => e.type)).toEqual(["access", "access.anonymous_denied"]);
    sink.record(deny("ip2"));
    sink.record(deny("ip2"));
    expect(sink.held).toBe(0);
    expect(inner.events).toHaveLength(4);
    expect(inner.events[3]).toMatchObject({ type: "access", data: { ipHash: "ip2" } });
  });
});
