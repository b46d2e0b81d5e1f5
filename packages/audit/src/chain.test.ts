import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  type ChainEvent,
  canonicalEvent,
  canonicalJson,
  canonicalPrepared,
  chainHash,
  GENESIS,
  normalizeEvent,
  prepareEvent,
  type StoredEvent,
  verifyChain,
} from "./chain.ts";
import type { AuditEventInput } from "./sink.ts";
import { buildChain, rehash, sampleInput } from "./test-chain.ts";

const base: ChainEvent = {
  seq: 7,
  id: "evt_a",
  at: new Date("2026-01-02T03:04:05.006Z"),
  type: "access",
  actor: "vol-1",
  campaignId: "starmer-2020",
  linkId: "lnk_1",
  decision: "deny",
  reason: "scope_denied",
  data: { z: 1, a: { y: [3, { d: 1, c: null }], b: "x" } },
};

describe("canonicalEvent", () => {
  it("sorts keys at every depth, keeps nulls, includes seq, times in ISO ms UTC", () => {
    expect(canonicalEvent(base)).toBe(
      '{"actor":"vol-1","at":"2026-01-02T03:04:05.006Z","campaignId":"starmer-2020",' +
        '"data":{"a":{"b":"x","y":[3,{"c":null,"d":1}]},"z":1},"decision":"deny","id":"evt_a",' +
        '"linkId":"lnk_1","reason":"scope_denied","seq":7,"type":"access"}',
    );
  });

  it("does not depend on key insertion order", () => {
    const shuffled: ChainEvent = {
      data: { a: { b: "x", y: [3, { c: null, d: 1 }] }, z: 1 },
      type: "access",
      seq: 7,
      reason: "scope_denied",
      linkId: "lnk_1",
      id: "evt_a",
      decision: "deny",
      campaignId: "starmer-2020",
      at: new Date("2026-01-02T03:04:05.006Z"),
      actor: "vol-1",
    };
    expect(canonicalEvent(shuffled)).toBe(canonicalEvent(base));
  });

  it("writes absent optional fields as explicit nulls and ignores prevHash/hash", () => {
    const sparse = {
      seq: 1,
      id: "evt_b",
      at: new Date(0),
      type: "key.rotated",
      data: {},
    } as unknown as ChainEvent;
    const stored = { ...sparse, prevHash: "p", hash: "h" };
    expect(canonicalEvent(sparse)).toBe(
      '{"actor":null,"at":"1970-01-01T00:00:00.000Z","campaignId":null,"data":{},"decision":null,' +
        '"id":"evt_b","linkId":null,"reason":null,"seq":1,"type":"key.rotated"}',
    );
    expect(canonicalEvent(stored)).toBe(canonicalEvent(sparse));
  });

  it("changes when any field changes", () => {
    const variants: Partial<ChainEvent>[] = [
      { seq: 8 },
      { id: "evt_b" },
      { at: new Date("2026-01-02T03:04:05.007Z") },
      { type: "link.redeemed" },
      { actor: null },
      { campaignId: "x" },
      { linkId: null },
      { decision: "allow" },
      { reason: null },
      { data: { z: 1 } },
    ];
    const seen = new Set([canonicalEvent(base)]);
    for (const v of variants) seen.add(canonicalEvent({ ...base, ...v }));
    expect(seen.size).toBe(variants.length + 1);
  });
});

describe("canonicalJson", () => {
  it("drops undefined members, maps non-finite numbers and undefined array slots to null", () => {
    expect(canonicalJson({ b: undefined, a: [undefined, Number.NaN, 1.5], c: new Date(1) })).toBe(
      '{"a":[null,null,1.5],"c":"1970-01-01T00:00:00.001Z"}',
    );
  });

  it("follows JSON.stringify for toJSON and boxed primitives", () => {
    const value = {
      own: { toJSON: () => ({ b: 2, a: 1 }) },
      boxed: [new String("s"), new Number(2), new Boolean(false)],
      map: new Map([["k", 1]]),
    };
    expect(canonicalJson(value)).toBe('{"boxed":["s",2,false],"map":{},"own":{"a":1,"b":2}}');
    expect(JSON.parse(canonicalJson(value))).toEqual(JSON.parse(JSON.stringify(value)));
  });

  it("refuses values JSON cannot hold", () => {
    expect(() => canonicalJson({ n: 1n })).toThrow(TypeError);
  });
});

describe("chainHash", () => {
  it("is sha256 hex of prevHash, a newline and the canonical form", () => {
    const want = createHash("sha256").update(`${GENESIS}\n{"a":1}`).digest("hex");
    expect(chainHash(GENESIS, '{"a":1}')).toBe(want);
    expect(GENESIS).toBe("0".repeat(64));
  });
});

describe("verifyChain", () => {
  const chain = buildChain(1_000);

  it("accepts a chain of 1000 events and reports its head", async () => {
    expect(await verifyChain(chain)).toEqual({ ok: true, events: 1_000, head: chain.at(-1)?.hash });
  });

  it("accepts an async iterable", async () => {
    async function* gen(): AsyncGenerator<StoredEvent> {
      yield* chain;
    }
    expect(await verifyChain(gen())).toMatchObject({ ok: true, events: 1_000 });
  });

  it("accepts an empty chain with GENESIS as head", async () => {
    expect(await verifyChain([])).toEqual({ ok: true, events: 0, head: GENESIS });
  });

  it("starts mid-chain from a given prevHash and seq", async () => {
    const tail = chain.slice(500);
    const start = { prevHash: chain[499]!.hash, seq: 501 };
    expect(await verifyChain(tail, start)).toMatchObject({ ok: true, events: 500 });
    expect(await verifyChain(tail)).toMatchObject({ ok: false, brokenAt: { seq: 501, reason: "seq_gap" } });
  });

  const fields: [string, (e: StoredEvent) => StoredEvent][] = [
    ["id", (e) => ({ ...e, id: `${e.id}x` })],
    ["at", (e) => ({ ...e, at: new Date(e.at.getTime() + 1) })],
    ["type", (e) => ({ ...e, type: "link.issued" })],
    ["actor", (e) => ({ ...e, actor: "mallory" })],
    ["campaignId", (e) => ({ ...e, campaignId: null })],
    ["linkId", (e) => ({ ...e, linkId: "lnk_other" })],
    ["decision", (e) => ({ ...e, decision: e.decision === "allow" ? "deny" : "allow" })],
    ["reason", (e) => ({ ...e, reason: "revoked" })],
    ["data", (e) => ({ ...e, data: { ...e.data, extra: true } })],
  ];
  it.each(fields)("detects a changed %s at that event", async (_name, change) => {
    const tampered = chain.map((e) => (e.seq === 321 ? change(e) : e));
    expect(await verifyChain(tampered)).toEqual({
      ok: false,
      events: 320,
      brokenAt: { seq: 321, id: tampered[320]!.id, reason: "hash_mismatch" },
    });
  });

  it("detects a changed prevHash or hash at that event", async () => {
    const badPrev = chain.map((e) => (e.seq === 10 ? { ...e, prevHash: GENESIS } : e));
    expect(await verifyChain(badPrev)).toMatchObject({
      ok: false,
      brokenAt: { seq: 10, reason: "prev_mismatch" },
    });
    const badHash = chain.map((e) => (e.seq === 10 ? { ...e, hash: "f".repeat(64) } : e));
    expect(await verifyChain(badHash)).toMatchObject({
      ok: false,
      brokenAt: { seq: 10, reason: "hash_mismatch" },
    });
  });

  it("detects an event rewritten with a recomputed hash at the next event", async () => {
    const forged = chain.map((e) => (e.seq === 10 ? rehash({ ...e, actor: "mallory" }) : e));
    expect(await verifyChain(forged)).toMatchObject({
      ok: false,
      brokenAt: { seq: 11, reason: "prev_mismatch" },
    });
  });

  it("detects a deleted event at the next one", async () => {
    const deleted = chain.filter((e) => e.seq !== 50);
    expect(await verifyChain(deleted)).toMatchObject({
      ok: false,
      events: 49,
      brokenAt: { seq: 51, reason: "seq_gap" },
    });
    // Renumbered after the deletion: the next event no longer links to its predecessor.
    const renumbered = deleted.map((e) => (e.seq > 50 ? rehash({ ...e, seq: e.seq - 1 }, e.prevHash) : e));
    expect(await verifyChain(renumbered)).toMatchObject({
      ok: false,
      brokenAt: { seq: 50, reason: "prev_mismatch" },
    });
  });

  it("detects deletion of the first event", async () => {
    expect(await verifyChain(chain.slice(1))).toMatchObject({
      ok: false,
      brokenAt: { seq: 2, reason: "seq_gap" },
    });
  });

  it("detects reordered events", async () => {
    const swapped = [...chain];
    [swapped[20], swapped[21]] = [swapped[21]!, swapped[20]!];
    expect(await verifyChain(swapped)).toMatchObject({ ok: false, brokenAt: { seq: 22, reason: "seq_gap" } });
    // Swapped contents with the seqs left in place.
    const contents = chain.map((e) =>
      e.seq === 21 ? { ...chain[21]!, seq: 21 } : e.seq === 22 ? { ...chain[20]!, seq: 22 } : e,
    );
    expect(await verifyChain(contents)).toMatchObject({ ok: false, brokenAt: { seq: 21 } });
  });

  it("detects an inserted event", async () => {
    const prev = chain[99]!;
    const intruder = rehash(
      { ...prev, seq: 101, id: "evt_forged", type: "access", decision: "allow", data: {} },
      prev.hash,
    );
    const inserted = [...chain.slice(0, 100), intruder, ...chain.slice(100)];
    expect(await verifyChain(inserted)).toMatchObject({ ok: false, events: 101, brokenAt: { seq: 101 } });
    expect((await verifyChain(inserted)).ok).toBe(false);
    const renumbered = [
      ...chain.slice(0, 100),
      intruder,
      ...chain.slice(100).map((e) => ({ ...e, seq: e.seq + 1 })),
    ];
    expect(await verifyChain(renumbered)).toMatchObject({
      ok: false,
      brokenAt: { seq: 102, id: chain[100]!.id, reason: "prev_mismatch" },
    });
  });
});

describe("normalizeEvent", () => {
  it("fills nulls and copies data through JSON", () => {
    const data = { when: new Date(0), skip: undefined, n: Number.NaN, list: [1, undefined] };
    const e = normalizeEvent({ type: "access", at: new Date(5), data });
    expect(e).toEqual({
      type: "access",
      at: new Date(5),
      actor: null,
      campaignId: null,
      linkId: null,
      decision: null,
      reason: null,
      data: { when: "1970-01-01T00:00:00.000Z", n: null, list: [1, null] },
    });
    data.n = 3;
    expect(e.data.n).toBeNull();
  });

  it("replaces NUL and lone surrogates, which Postgres cannot store", () => {
    const e = normalizeEvent({
      type: "a\u0000b",
      at: new Date(0),
      actor: "x\uD800y",
      data: { "k\u0000": "\uDC00", ok: "😀" },
    });
    expect(e.type).toBe("a\uFFFDb");
    expect(e.actor).toBe("x\uFFFDy");
    expect(e.data).toEqual({ "k\uFFFD": "\uFFFD", ok: "😀" });
  });

  it("keeps the later of two keys that clean to the same key, as jsonb would", () => {
    const e = normalizeEvent({ type: "x", at: new Date(0), data: { "k\u0000": 1, "k\uFFFD": 2 } });
    expect(e.data).toEqual({ "k\uFFFD": 2 });
  });

  it("keeps a __proto__ key as data, not as a prototype", () => {
    const e = normalizeEvent({
      type: "x",
      at: new Date(0),
      data: JSON.parse('{"__proto__":{"polluted":1}}'),
    });
    expect(Object.keys(e.data)).toEqual(["__proto__"]);
    expect(canonicalJson(e.data)).toBe('{"__proto__":{"polluted":1}}');
  });

  it.each([
    ["invalid time", { type: "x", at: new Date(Number.NaN) }],
    ["empty type", { type: "", at: new Date(0) }],
    ["a time Postgres cannot parse", { type: "x", at: new Date("+010000-01-01T00:00:00Z") }],
    ["an over-long campaignId", { type: "x", at: new Date(0), campaignId: "c".repeat(257) }],
    ["an over-long linkId", { type: "x", at: new Date(0), linkId: "l".repeat(257) }],
    ["bad decision", { type: "x", at: new Date(0), decision: "maybe" }],
    ["array data", { type: "x", at: new Date(0), data: [1] }],
    ["bigint data", { type: "x", at: new Date(0), data: { n: 1n } }],
  ])("refuses %s", (_name, input) => {
    expect(() => normalizeEvent(input as never)).toThrow(TypeError);
  });
});

describe("canonicalPrepared", () => {
  const awkward: AuditEventInput[] = [
    sampleInput(3),
    { type: "key.rotated", at: new Date(0) },
    {
      type: 't\u0000"quoted"\n',
      at: new Date("2026-05-06T07:08:09.010Z"),
      actor: "\uDC00 lone",
      campaignId: "é",
      linkId: "",
      decision: "allow",
      reason: "\u2028",
      data: {
        "b\u0000": 1,
        b: [undefined, () => 1, { y: new Date(7), x: Number.POSITIVE_INFINITY }],
        a: "😀",
      },
    },
  ];
  it.each(awkward.map((e, i) => [i, e] as const))(
    "matches canonicalEvent of the stored form (%i)",
    (_i, input) => {
      const prepared = prepareEvent(input);
      const stored: ChainEvent = { seq: 42, id: "evt_x", ...normalizeEvent(input) };
      expect(canonicalPrepared(prepared, 42, "evt_x")).toBe(canonicalEvent(stored));
    },
  );

  it("freezes the event: later changes by the caller are not hashed", () => {
    const input = { type: "access", at: new Date(0), data: { n: 1 } };
    const prepared = prepareEvent(input);
    input.data.n = 2;
    input.at.setTime(5);
    expect(prepared.dataJson).toBe('{"n":1}');
    expect(prepared.atIso).toBe("1970-01-01T00:00:00.000Z");
    expect(canonicalPrepared(prepared, 1, "evt_x")).toContain('"at":"1970-01-01T00:00:00.000Z"');
  });

  it("refuses circular data", () => {
    const data: Record<string, unknown> = {};
    data.self = data;
    expect(() => prepareEvent({ type: "x", at: new Date(0), data })).toThrow(TypeError);
  });
});
