import { appendInTransaction } from "@phaselock/audit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ADMIN,
  call,
  callJson,
  createHarness,
  createKey,
  type Harness,
  seedContest,
  seedOpen,
  uid,
} from "../test-support.ts";

type Page<T = Record<string, unknown>> = { items: T[]; nextCursor: string | null };

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, 60_000);
afterAll(() => h.close());

/** Every item of a list, following `nextCursor` with pages of `limit`. */
async function walk<T>(path: string, limit: number, token: string = ADMIN): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 100; i++) {
    const sep = path.includes("?") ? "&" : "?";
    const url: string = `${path}${sep}limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`;
    const res: { status: number; body: Page<T> } = await callJson<Page<T>>(h, "GET", url, { token });
    expect(res.status).toBe(200);
    expect(res.body.items.length).toBeLessThanOrEqual(limit);
    out.push(...res.body.items);
    cursor = res.body.nextCursor;
    if (cursor === null) return out;
  }
  throw new Error("the list never ended");
}

async function issue(campaignId: string, phase: string, refs: string[]) {
  const res = await callJson<{ links: { id: string; volunteer: { ref: string } }[] }>(
    h,
    "POST",
    "/v1/links/batch",
    {
      body: {
        campaignId,
        phase,
        scopes: ["calls:read", "calls:write"],
        volunteers: refs.map((ref) => ({ ref })),
      },
    },
  );
  expect(res.status).toBe(201);
  return res.body.links;
}

describe("GET /v1/contests", () => {
  it("pages through every contest, each with its timeline and current phase, for any role", async () => {
    const seeded = [await seedContest(h), await seedContest(h), await seedContest(h)];
    const all = await walk<{ id: string; phases: unknown[]; currentPhase: { name: string } | null }>(
      "/v1/contests",
      2,
    );
    const ids = all.map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const s of seeded) {
      const contest = all.find((c) => c.id === s.contestId);
      expect(contest?.phases).toHaveLength(3);
      expect(contest?.currentPhase?.name).toBe("nominations");
    }
    const { campaignId } = seeded[0]!;
    for (const role of ["coordinator", "auditor"]) {
      const { key } = await createKey(h, role, role === "coordinator" ? campaignId : undefined);
      const res = await callJson<Page>(h, "GET", "/v1/contests", { token: key });
      expect(res.status).toBe(200);
    }
  });

  it("defaults to 50 and refuses a limit over 500 or a forged cursor with 400 validation", async () => {
    expect((await callJson(h, "GET", "/v1/contests?limit=501")).body.code).toBe("validation");
    expect((await callJson(h, "GET", "/v1/contests?limit=0")).body.code).toBe("validation");
    const forged = Buffer.from(JSON.stringify(["x", 1])).toString("base64url");
    const res = await callJson(h, "GET", `/v1/contests?cursor=${forged}`);
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("validation");
  });

  it("401 without a credential", async () => {
    const res = await callJson(h, "GET", "/v1/contests", { token: null });
    expect(res.status).toBe(401);
    expect(res.body.code).toBe("unauthorized");
  });
});

describe("GET /v1/campaigns and /v1/campaigns/:campaignId", () => {
  it("lists campaigns, filtered by contest, for admins and auditors", async () => {
    const { contestId, campaignId } = await seedContest(h);
    const second = uid("campaign");
    await call(h, "PUT", `/v1/campaigns/${second}`, { body: { name: "Second", contestId } });
    const res = await callJson<Page<{ id: string; contestId: string }>>(
      h,
      "GET",
      `/v1/campaigns?contestId=${contestId}`,
    );
    expect(res.status).toBe(200);
    expect(res.body.items.map((c) => c.id).sort()).toEqual([campaignId, second].sort());
    const { key } = await createKey(h, "auditor");
    const paged = await walk<{ id: string }>(`/v1/campaigns?contestId=${contestId}`, 1, key);
    expect(paged.map((c) => c.id).sort()).toEqual([campaignId, second].sort());
  });

  it("a coordinator's list holds its own campaign only", async () => {
    const { contestId, campaignId } = await seedContest(h);
    await call(h, "PUT", `/v1/campaigns/${uid("campaign")}`, { body: { name: "Rival", contestId } });
    const { key } = await createKey(h, "coordinator", campaignId);
    const res = await callJson<Page<{ id: string }>>(h, "GET", `/v1/campaigns?contestId=${contestId}`, {
      token: key,
    });
    expect(res.status).toBe(200);
    expect(res.body.items.map((c) => c.id)).toEqual([campaignId]);
    const all = await callJson<Page<{ id: string }>>(h, "GET", "/v1/campaigns", { token: key });
    expect(all.body.items.map((c) => c.id)).toEqual([campaignId]);
  });

  it("answers one campaign with its entitlements and link counts by status", async () => {
    const { campaignId } = await seedOpen(h, { entitled: ["calls:read", "calls:write"] });
    const links = await issue(campaignId, "open", ["a", "b", "c"]);
    await call(h, "POST", "/v1/revocations", {
      body: { scope: "link", linkId: links[0]!.id, reason: "lost phone" },
    });
    const res = await callJson(h, "GET", `/v1/campaigns/${campaignId}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      id: campaignId,
      name: "Campaign",
      limits: {},
      entitlements: { open: ["calls:read", "calls:write"] },
      links: { active: 2, revoked: 1, expired: 0, suspended: 0, exhausted: 0 },
    });
    h.clock.advance(31 * 86_400_000);
    try {
      const later = await callJson(h, "GET", `/v1/campaigns/${campaignId}`);
      expect(later.body.links).toMatchObject({ active: 0, revoked: 1, expired: 2 });
    } finally {
      h.clock.advance(-31 * 86_400_000);
    }
  });

  it("a coordinator reads its own campaign; another's is 403 forbidden; an unknown one 404", async () => {
    const mine = await seedOpen(h);
    const theirs = await seedOpen(h);
    const { key } = await createKey(h, "coordinator", mine.campaignId);
    expect((await callJson(h, "GET", `/v1/campaigns/${mine.campaignId}`, { token: key })).status).toBe(200);
    const other = await callJson(h, "GET", `/v1/campaigns/${theirs.campaignId}`, { token: key });
    expect(other.status).toBe(403);
    expect(other.body.code).toBe("forbidden");
    const unknown = await callJson(h, "GET", `/v1/campaigns/${uid("none")}`);
    expect(unknown.status).toBe(404);
    expect(unknown.body.code).toBe("not_found");
  });
});

describe("GET /v1/api-keys", () => {
  it("lists live keys with label and last use, never the key or its hash", async () => {
    const created = await callJson<{ id: string; key: string }>(h, "POST", "/v1/api-keys", {
      body: { role: "auditor", label: "Returning officer" },
    });
    const gone = await createKey(h, "auditor");
    await call(h, "DELETE", `/v1/api-keys/${gone.id}`);
    const before = await walk<Record<string, unknown>>("/v1/api-keys", 2);
    const listed = before.find((k) => k.id === created.body.id);
    expect(listed).toEqual({
      id: created.body.id,
      role: "auditor",
      campaignId: null,
      label: "Returning officer",
      createdAt: expect.any(String),
      lastUsedAt: null,
    });
    expect(before.some((k) => k.id === gone.id)).toBe(false);
    const text = JSON.stringify(before);
    expect(text).not.toContain(created.body.key);
    expect(text).not.toMatch(/hash/i);

    const used = h.clock.now().toISOString();
    expect((await call(h, "GET", "/v1/audit/verify", { token: created.body.key })).status).toBe(200);
    const after = await walk<Record<string, unknown>>("/v1/api-keys", 500);
    expect(after.find((k) => k.id === created.body.id)?.lastUsedAt).toBe(used);
  });

  it("writes lastUsedAt at most once a minute per key", async () => {
    const { id, key } = await createKey(h, "auditor");
    const lastUsed = async () =>
      (await walk<{ id: string; lastUsedAt: string | null }>("/v1/api-keys", 500)).find((k) => k.id === id)
        ?.lastUsedAt;
    const first = h.clock.now().toISOString();
    await call(h, "GET", "/v1/audit/verify", { token: key });
    h.clock.advance(30_000);
    await call(h, "GET", "/v1/audit/verify", { token: key });
    expect(await lastUsed()).toBe(first);
    h.clock.advance(30_000);
    const third = h.clock.now().toISOString();
    await call(h, "GET", "/v1/audit/verify", { token: key });
    expect(await lastUsed()).toBe(third);
  });

  it("a failed lastUsedAt write never fails the request", async () => {
    const { key } = await createKey(h, "auditor");
    const repo = h.deps.repos.apiKeys;
    const original = repo.recordUse;
    repo.recordUse = () => Promise.reject(new Error("injected"));
    try {
      h.clock.advance(120_000);
      expect((await call(h, "GET", "/v1/audit/verify", { token: key })).status).toBe(200);
    } finally {
      repo.recordUse = original;
    }
  });

  it("is for admins only", async () => {
    const { campaignId } = await seedOpen(h);
    for (const [role, campaign] of [
      ["coordinator", campaignId],
      ["auditor", undefined],
    ] as const) {
      const { key } = await createKey(h, role, campaign);
      const res = await callJson(h, "GET", "/v1/api-keys", { token: key });
      expect(res.status).toBe(403);
      expect(res.body.code).toBe("forbidden");
    }
    const admin = await createKey(h, "admin");
    expect((await call(h, "GET", "/v1/api-keys", { token: admin.key })).status).toBe(200);
  });
});

describe("links carry devices and active sessions; campaign progress", () => {
  async function openSession(linkId: string, deviceId: string, opts: { ended?: boolean } = {}) {
    const now = h.clock.now();
    const id = uid("ses");
    await h.deps.repos.sessions.open({
      id,
      tokenHash: uid("hash"),
      linkId,
      deviceId,
      createdAt: now,
      expiresAt: new Date(now.getTime() + 3_600_000),
    });
    await h.deps.repos.links.redeem(linkId, now);
    if (opts.ended) {
      await h.handle.db.transaction(async (tx) => {
        await tx.execute(
          (await import("drizzle-orm")).sql`update sessions set ended_at = now() where id = ${id}`,
        );
      });
    }
  }

  /** A contest whose `first` phase holds now and whose `ballot` follows, both entitled. */
  async function seedTwoPhases() {
    const contestId = uid("contest");
    const campaignId = uid("campaign");
    const t = h.clock.now().getTime();
    const iso = (days: number) => new Date(t + days * 86_400_000).toISOString();
    const phases = [
      { name: "first", startsAt: iso(-1), endsAt: iso(5), memberData: true },
      { name: "ballot", startsAt: iso(5), endsAt: iso(20), memberData: true },
    ];
    await call(h, "PUT", `/v1/contests/${contestId}`, { body: { name: "Two phases", phases } });
    await call(h, "PUT", `/v1/campaigns/${campaignId}`, { body: { name: "Campaign", contestId } });
    for (const phase of ["first", "ballot"]) {
      await call(h, "PUT", `/v1/campaigns/${campaignId}/entitlements/${phase}`, {
        body: { scopes: ["calls:read", "calls:write"] },
      });
    }
    return { contestId, campaignId };
  }

  async function calls(campaignId: string, linkId: string, ref: string, n: number, scope = "calls:write") {
    const at = h.clock.now();
    const events = Array.from({ length: n }, () => ({
      type: "access",
      at,
      actor: ref,
      campaignId,
      linkId,
      decision: "allow" as const,
      data: { route: "POST /calls/:id/outcome", scope },
    }));
    await h.handle.db.transaction((tx) => appendInTransaction(tx, events));
  }

  it("GET /v1/links items show devices and active sessions", async () => {
    const { campaignId } = await seedOpen(h);
    const [a, b] = await issue(campaignId, "open", ["ada", "bob"]);
    await openSession(a!.id, "dev-1");
    await openSession(a!.id, "dev-2");
    await openSession(a!.id, "dev-2", { ended: true });
    const res = await callJson<Page<{ id: string; devices: number; activeSessions: number; uses: number }>>(
      h,
      "GET",
      `/v1/links?campaignId=${campaignId}`,
    );
    const byId = new Map(res.body.items.map((l) => [l.id, l]));
    expect(byId.get(a!.id)).toMatchObject({ devices: 2, activeSessions: 2, uses: 3, status: "active" });
    expect(byId.get(b!.id)).toMatchObject({ devices: 0, activeSessions: 0, uses: 0, lastSeenAt: null });
    const one = await callJson(h, "GET", `/v1/links/${a!.id}`);
    expect(one.body).toMatchObject({ devices: 2, activeSessions: 2 });
    // A revoked link's sessions are refused: none is active.
    await call(h, "POST", "/v1/revocations", { body: { scope: "link", linkId: a!.id, reason: "lost" } });
    const revoked = await callJson(h, "GET", `/v1/links/${a!.id}`);
    expect(revoked.body).toMatchObject({ status: "revoked", devices: 2, activeSessions: 0 });
  });

  it("progress counts links opened, active sessions and calls made by volunteer, with totals", async () => {
    const { campaignId } = await seedTwoPhases();
    const [ada, bob, cy] = await issue(campaignId, "first", ["ada", "bob", "cy"]);
    const [adaBallot] = await issue(campaignId, "ballot", ["ada"]);
    await openSession(ada!.id, "dev-1");
    await openSession(bob!.id, "dev-2", { ended: true });
    await calls(campaignId, ada!.id, "ada", 3);
    await calls(campaignId, ada!.id, "ada", 2, "calls:read");
    await calls(campaignId, bob!.id, "bob", 1);
    // Another campaign's calls never count here.
    const other = await seedOpen(h);
    const [rival] = await issue(other.campaignId, "open", ["ada"]);
    await calls(other.campaignId, rival!.id, "ada", 5);

    const res = await callJson(h, "GET", `/v1/campaigns/${campaignId}/progress`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      campaignId,
      phase: null,
      totals: { volunteers: 3, links: 4, activeLinks: 4, opened: 2, activeSessions: 1, callsMade: 4 },
      items: [
        { ref: "ada", links: 2, activeLinks: 2, opened: 1, activeSessions: 1, callsMade: 3 },
        { ref: "bob", links: 1, opened: 1, activeSessions: 0, callsMade: 1 },
        { ref: "cy", links: 1, opened: 0, activeSessions: 0, callsMade: 0 },
      ],
      nextCursor: null,
    });
    expect(adaBallot).toBeDefined();
    void cy;

    const ballot = await callJson(h, "GET", `/v1/campaigns/${campaignId}/progress?phase=ballot`);
    expect(ballot.body).toMatchObject({
      phase: "ballot",
      totals: { volunteers: 1, links: 1, opened: 0, callsMade: 0 },
      items: [{ ref: "ada", links: 1 }],
    });

    const page1 = await callJson<{ items: { ref: string }[]; nextCursor: string | null }>(
      h,
      "GET",
      `/v1/campaigns/${campaignId}/progress?limit=2`,
    );
    expect(page1.body.items.map((v) => v.ref)).toEqual(["ada", "bob"]);
    const page2 = await callJson<{ items: { ref: string }[]; nextCursor: string | null }>(
      h,
      "GET",
      `/v1/campaigns/${campaignId}/progress?limit=2&cursor=${page1.body.nextCursor}`,
    );
    expect(page2.body.items.map((v) => v.ref)).toEqual(["cy"]);
    expect(page2.body.nextCursor).toBeNull();
  });

  it("progress: the campaign's coordinator only; auditors and others refused", async () => {
    const mine = await seedOpen(h);
    const theirs = await seedOpen(h);
    const { key } = await createKey(h, "coordinator", mine.campaignId);
    expect((await call(h, "GET", `/v1/campaigns/${mine.campaignId}/progress`, { token: key })).status).toBe(
      200,
    );
    const other = await callJson(h, "GET", `/v1/campaigns/${theirs.campaignId}/progress`, { token: key });
    expect(other.status).toBe(403);
    expect(other.body.code).toBe("forbidden");
    const auditor = await createKey(h, "auditor");
    const refused = await callJson(h, "GET", `/v1/campaigns/${mine.campaignId}/progress`, {
      token: auditor.key,
    });
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe("forbidden");
    const bad = await callJson(h, "GET", `/v1/campaigns/${mine.campaignId}/progress?phase=no%20such`);
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe("validation");
    const unknown = await callJson(h, "GET", `/v1/campaigns/${mine.campaignId}/progress?phase=ballot`);
    expect(unknown.status).toBe(400);
    expect(unknown.body.code).toBe("validation");
    const noContest = await callJson(h, "GET", `/v1/campaigns?contestId=${uid("none")}`);
    expect(noContest.status).toBe(400);
    expect(noContest.body.code).toBe("validation");
  });

  it("refuses GET /v1/links?campaignId= of a campaign that does not exist (400 validation), not an empty page", async () => {
    const { campaignId } = await seedOpen(h);
    const res = await callJson<{ code: string; errors: { pointer: string }[] }>(
      h,
      "GET",
      `/v1/links?campaignId=${uid("none")}`,
    );
    expect([res.status, res.body.code]).toEqual([400, "validation"]);
    expect(res.body.errors.map((e) => e.pointer)).toEqual(["#/campaignId"]);
    // A campaign that exists lists, an empty page included.
    const empty = await callJson<{ items: unknown[] }>(
      h,
      "GET",
      `/v1/links?campaignId=${campaignId}&volunteer=nobody`,
    );
    expect([empty.status, empty.body.items]).toEqual([200, []]);
  });
});
