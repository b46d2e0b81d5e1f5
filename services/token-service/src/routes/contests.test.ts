import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  call,
  callJson,
  createHarness,
  createKey,
  type Harness,
  seedOpen,
  T0,
  uid,
} from "../test-support.ts";

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, 60_000);
afterAll(() => h.close());

const DAY = 86_400_000;
const at = (ms: number) => new Date(Date.parse(T0) + ms).toISOString();
const timeline = [
  { name: "nominations", startsAt: at(-DAY), endsAt: at(DAY), memberData: false },
  { name: "ballot", startsAt: at(DAY), endsAt: at(10 * DAY), memberData: true },
];

describe("PUT /v1/contests/:contestId", () => {
  it("creates a contest, publishes it with the new version and audits it", async () => {
    const id = uid("contest");
    const before = h.published.length;
    const { status, body } = await callJson(h, "PUT", `/v1/contests/${id}`, {
      // Given out of order: stored sorted by start.
      body: { name: "Leadership 2020", phases: [...timeline].reverse() },
    });
    expect(status).toBe(200);
    expect(body).toEqual({
      id,
      name: "Leadership 2020",
      phases: timeline,
      currentPhase: timeline[0],
    });
    const msg = h.published[before];
    expect(msg?.change.type).toBe("contest");
    expect(msg?.version).toBe(await h.deps.repos.policyState.current());
    expect(h.audit.events.at(-1)).toMatchObject({ type: "contest.replaced", actor: "admin" });
  });

  it("replaces the timeline", async () => {
    const id = uid("contest");
    await call(h, "PUT", `/v1/contests/${id}`, { body: { name: "A", phases: timeline } });
    const { status, body } = await callJson<{ phases: unknown[]; name: string }>(
      h,
      "PUT",
      `/v1/contests/${id}`,
      {
        body: { name: "B", phases: [timeline[1]] },
      },
    );
    expect(status).toBe(200);
    expect(body.name).toBe("B");
    expect(body.phases).toEqual([timeline[1]]);
  });

  it("accepts phases that touch (half-open windows)", async () => {
    const { status } = await callJson(h, "PUT", `/v1/contests/${uid("c")}`, {
      body: { name: "x", phases: timeline },
    });
    expect(status).toBe(200);
  });

  it.each([
    ["reversed dates", [{ name: "p", startsAt: at(DAY), endsAt: at(0), memberData: true }]],
    ["empty window", [{ name: "p", startsAt: at(0), endsAt: at(0), memberData: true }]],
    [
      "overlapping phases",
      [
        { name: "a", startsAt: at(0), endsAt: at(2 * DAY), memberData: true },
        { name: "b", startsAt: at(DAY), endsAt: at(3 * DAY), memberData: true },
      ],
    ],
    [
      "duplicate names",
      [
        { name: "a", startsAt: at(0), endsAt: at(DAY), memberData: true },
        { name: "a", startsAt: at(DAY), endsAt: at(2 * DAY), memberData: true },
      ],
    ],
    ["no phases", []],
    [
      "a date without offset",
      [{ name: "p", startsAt: "2020-03-01T12:00:00", endsAt: at(DAY), memberData: true }],
    ],
    ["a non-date", [{ name: "p", startsAt: "soon", endsAt: at(DAY), memberData: true }]],
    ["a missing memberData", [{ name: "p", startsAt: at(0), endsAt: at(DAY) }]],
    [
      "an unknown phase field",
      [{ name: "p", startsAt: at(0), endsAt: at(DAY), memberData: true, scopes: [] }],
    ],
    ["a phase name with a slash", [{ name: "a/b", startsAt: at(0), endsAt: at(DAY), memberData: true }]],
  ])("400 validation: %s", async (_, phases) => {
    const { status, body } = await callJson(h, "PUT", `/v1/contests/${uid("c")}`, {
      body: { name: "x", phases },
    });
    expect(status).toBe(400);
    expect(body.code).toBe("validation");
  });

  it("400 for a contest id that is not a slug", async () => {
    const { status, body } = await callJson(h, "PUT", `/v1/contests/${"a".repeat(65)}`, {
      body: { name: "x", phases: timeline },
    });
    expect(status).toBe(400);
    expect(body.code).toBe("validation");
  });

  it("only an admin may replace a timeline", async () => {
    const { campaignId } = await seedOpen(h);
    const coordinator = await createKey(h, "coordinator", campaignId);
    const { status, body } = await callJson(h, "PUT", `/v1/contests/${uid("c")}`, {
      token: coordinator.key,
      body: { name: "x", phases: timeline },
    });
    expect(status).toBe(403);
    expect(body.code).toBe("forbidden");
  });

  it("still answers when the change feed is down, and logs it", async () => {
    const publish = h.bus.publish.bind(h.bus);
    h.bus.publish = () => Promise.reject(new Error("redis down"));
    try {
      const { status } = await callJson(h, "PUT", `/v1/contests/${uid("c")}`, {
        body: { name: "x", phases: timeline },
      });
      expect(status).toBe(200);
      expect(h.logs.some((l) => l.level === "warn" && l.msg.includes("not published"))).toBe(true);
    } finally {
      h.bus.publish = publish;
    }
  });
});

describe("GET /v1/contests/:contestId", () => {
  it("answers any role, with the current phase", async () => {
    const id = uid("contest");
    await call(h, "PUT", `/v1/contests/${id}`, { body: { name: "L", phases: timeline } });
    const { campaignId } = await seedOpen(h);
    const tokens = [
      undefined,
      (await createKey(h, "auditor")).key,
      (await createKey(h, "coordinator", campaignId)).key,
    ];
    for (const token of tokens) {
      const { status, body } = await callJson(h, "GET", `/v1/contests/${id}`, token ? { token } : {});
      expect(status).toBe(200);
      expect(body.currentPhase).toEqual(timeline[0]);
    }
  });

  it("currentPhase follows the clock and is null when the contest is closed", async () => {
    const id = uid("contest");
    await call(h, "PUT", `/v1/contests/${id}`, { body: { name: "L", phases: timeline } });
    const clock = h.clock.now();
    try {
      h.clock.set(at(DAY));
      expect((await callJson(h, "GET", `/v1/contests/${id}`)).body.currentPhase).toEqual(timeline[1]);
      h.clock.set(at(10 * DAY));
      expect((await callJson(h, "GET", `/v1/contests/${id}`)).body.currentPhase).toBeNull();
      h.clock.set(at(-2 * DAY));
      expect((await callJson(h, "GET", `/v1/contests/${id}`)).body.currentPhase).toBeNull();
    } finally {
      h.clock.set(clock);
    }
  });

  it("404 for an unknown contest, 401 without a token", async () => {
    expect((await callJson(h, "GET", "/v1/contests/nope")).body.code).toBe("not_found");
    expect((await callJson(h, "GET", "/v1/contests/nope", { token: null })).status).toBe(401);
  });
});

describe("POST /v1/contests/:contestId/phases/:phase/end", () => {
  const end = (
    id: string,
    phase: string,
    body: unknown = { reason: "links leaked" },
    token?: string | null,
  ) =>
    callJson(h, "POST", `/v1/contests/${id}/phases/${phase}/end`, {
      body,
      ...(token !== undefined ? { token } : {}),
    });

  it("ends the phase now, publishes the closure with the new version and audits it", async () => {
    const id = uid("contest");
    await call(h, "PUT", `/v1/contests/${id}`, { body: { name: "L", phases: timeline } });
    const before = h.published.length;
    const { status, body } = await end(id, "nominations");
    expect(status).toBe(200);
    const nominations = { ...timeline[0], endsAt: T0 };
    expect(body).toEqual({
      id,
      name: "L",
      phases: [nominations, timeline[1]],
      currentPhase: null,
      closure: { phase: "nominations", closedAt: T0, reason: "links leaked" },
    });
    const msg = h.published[before];
    expect(msg?.version).toBe(await h.deps.repos.policyState.current());
    expect(msg?.change).toMatchObject({
      type: "contest",
      closures: [{ contestId: id, phase: "nominations", closedAt: new Date(T0) }],
    });
    expect(h.audit.events.at(-1)).toMatchObject({
      type: "phase.ended",
      actor: "admin",
      data: { contestId: id, phase: "nominations", closedAt: T0, reason: "links leaked", cause: "end" },
    });
    expect((await callJson(h, "GET", `/v1/contests/${id}`)).body.phases).toEqual([nominations, timeline[1]]);
  });

  it("409 phase_closed when the phase has already ended, 404 for an unknown contest or phase", async () => {
    const id = uid("contest");
    await call(h, "PUT", `/v1/contests/${id}`, { body: { name: "L", phases: timeline } });
    expect((await end(id, "nominations")).status).toBe(200);
    const again = await end(id, "nominations");
    expect([again.status, again.body.code]).toEqual([409, "phase_closed"]);
    const missingPhase = await end(id, "hustings");
    expect([missingPhase.status, missingPhase.body.code]).toEqual([404, "not_found"]);
    const missingContest = await end(uid("nope"), "ballot");
    expect([missingContest.status, missingContest.body.code]).toEqual([404, "not_found"]);
  });

  it.each([
    ["no reason", {}],
    ["an empty reason", { reason: "" }],
    ["a reason over 500 characters", { reason: "x".repeat(501) }],
    ["an unknown field", { reason: "r", at: T0 }],
  ])("400 validation: %s", async (_, body) => {
    const id = uid("contest");
    await call(h, "PUT", `/v1/contests/${id}`, { body: { name: "L", phases: timeline } });
    const res = await end(id, "nominations", body);
    expect([res.status, res.body.code]).toEqual([400, "validation"]);
    // Nothing ended.
    expect((await callJson(h, "GET", `/v1/contests/${id}`)).body.currentPhase).toEqual(timeline[0]);
  });

  it("401 without a token; 403 for a coordinator or an auditor", async () => {
    const id = uid("contest");
    await call(h, "PUT", `/v1/contests/${id}`, { body: { name: "L", phases: timeline } });
    expect((await end(id, "nominations", { reason: "r" }, null)).status).toBe(401);
    const { campaignId } = await seedOpen(h);
    for (const key of [await createKey(h, "coordinator", campaignId), await createKey(h, "auditor")]) {
      const res = await end(id, "nominations", { reason: "r" }, key.key);
      expect([res.status, res.body.code]).toEqual([403, "forbidden"]);
    }
    expect((await callJson(h, "GET", `/v1/contests/${id}`)).body.currentPhase).toEqual(timeline[0]);
  });
});

describe("a timeline that ends a phase early", () => {
  it("records the closure, and a later timeline re-opening it says so and still applies", async () => {
    const id = uid("contest");
    await call(h, "PUT", `/v1/contests/${id}`, { body: { name: "L", phases: timeline } });
    const cut = [{ ...timeline[0], endsAt: at(-60_000) }, timeline[1]];
    const ended = await callJson(h, "PUT", `/v1/contests/${id}`, { body: { name: "L", phases: cut } });
    expect(ended.status).toBe(200);
    expect(ended.body.warnings).toBeUndefined();
    expect(h.audit.events.at(-1)).toMatchObject({
      type: "phase.ended",
      data: { contestId: id, phase: "nominations", closedAt: T0, cause: "timeline" },
    });
    expect(h.published.at(-1)?.change).toMatchObject({
      closures: [{ contestId: id, phase: "nominations", closedAt: new Date(T0) }],
    });

    const clock = h.clock.now();
    try {
      h.clock.set(at(60_000));
      const reopened = await callJson(h, "PUT", `/v1/contests/${id}`, {
        body: { name: "L", phases: timeline },
      });
      expect(reopened.status).toBe(200);
      expect(reopened.body.currentPhase).toEqual(timeline[0]);
      expect(reopened.body.warnings).toEqual([
        { code: "phase_closed_early", phase: "nominations", closedAt: T0, message: expect.any(String) },
      ]);
      expect(h.published.at(-1)?.change).toMatchObject({ closures: [] });
    } finally {
      h.clock.set(clock);
    }
  });
});
