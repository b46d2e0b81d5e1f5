import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callJson, createHarness, createKey, type Harness, seedOpen } from "../test-support.ts";

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, 60_000);
afterAll(() => h.close());

async function issue(campaignId: string, ref: string): Promise<string> {
  const { status, body } = await callJson<{ id: string }>(h, "POST", "/v1/links", {
    body: { campaignId, phase: "open", volunteer: { ref }, scopes: ["calls:read"] },
  });
  if (status !== 201) throw new Error(`issue failed: ${status}`);
  return body.id;
}

const revoke = (body: Record<string, unknown>, token?: string) =>
  callJson<{ id: string; effectiveAt: string; matched: number; code?: string }>(
    h,
    "POST",
    "/v1/revocations",
    {
      body,
      ...(token ? { token } : {}),
    },
  );

const status = async (linkId: string) => (await callJson(h, "GET", `/v1/links/${linkId}`)).body.status;

describe("POST /v1/revocations", () => {
  it("revokes one link, publishing and auditing the revocation", async () => {
    const { campaignId } = await seedOpen(h);
    const linkId = await issue(campaignId, "v1");
    const res = await revoke({ scope: "link", linkId, reason: "phone lost" });
    expect(res.status).toBe(201);
    // The contract's answer: {id, effectiveAt, matched}.
    expect(Object.keys(res.body).sort()).toEqual(["effectiveAt", "id", "matched"]);
    expect(res.body.matched).toBe(1);
    expect(res.body.id).toMatch(/^rev_/);
    expect(res.body.effectiveAt).toBe(h.clock.now().toISOString());
    expect(await status(linkId)).toBe("revoked");
    expect(h.published.at(-1)).toMatchObject({
      version: await h.deps.repos.policyState.current(),
      change: { type: "revocation", revocation: { id: res.body.id, scope: "link", linkId, actor: "admin" } },
    });
    expect(h.audit.events.at(-1)).toMatchObject({
      type: "revocation.created",
      campaignId,
      linkId,
      actor: "admin",
    });
  });

  it("says how many links it covers: every link of the volunteer, 0 for a typo'd ref", async () => {
    const { campaignId } = await seedOpen(h);
    await issue(campaignId, "ann");
    await issue(campaignId, "ann");
    await issue(campaignId, "bob");
    const typo = await revoke({ scope: "volunteer", volunteerRef: "anne", campaignId, reason: "left" });
    expect([typo.status, typo.body.matched]).toEqual([201, 0]);
    const ann = await revoke({ scope: "volunteer", volunteerRef: "ann", campaignId, reason: "left" });
    expect([ann.status, ann.body.matched]).toEqual([201, 2]);
    const all = await revoke({ scope: "campaign", campaignId, reason: "reset" });
    expect(all.body.matched).toBe(3);
  });

  it("a campaign revocation covers links issued up to its second, not later ones", async () => {
    const { campaignId } = await seedOpen(h);
    h.clock.advance(1000 - (h.clock.now().getTime() % 1000) + 100);
    const before = await issue(campaignId, "a");
    h.clock.advance(500); // same second as the revocation
    const sameSecond = await issue(campaignId, "b");
    await revoke({ scope: "campaign", campaignId, reason: "reset" });
    h.clock.advance(1000);
    const after = await issue(campaignId, "c");
    expect(await status(before)).toBe("revoked");
    expect(await status(sameSecond)).toBe("revoked");
    expect(await status(after)).toBe("active");
  });

  it("volunteer, phase, contest and all scopes", async () => {
    const { campaignId, contestId } = await seedOpen(h);
    const other = await seedOpen(h);
    const a = await issue(campaignId, "shared-ref");
    const b = await issue(other.campaignId, "shared-ref");
    await revoke({ scope: "volunteer", volunteerRef: "shared-ref", campaignId, reason: "left" });
    expect(await status(a)).toBe("revoked");
    expect(await status(b)).toBe("active");
    const c = await issue(campaignId, "x");
    await revoke({ scope: "phase", contestId, phase: "open", reason: "r" });
    expect(await status(c)).toBe("revoked");
    const d = await issue(other.campaignId, "y");
    await revoke({ scope: "contest", contestId: other.contestId, reason: "r" });
    expect(await status(d)).toBe("revoked");
    const e = await issue((await seedOpen(h)).campaignId, "z");
    expect((await revoke({ scope: "all", reason: "breach" })).status).toBe(201);
    expect(await status(e)).toBe("revoked");
    h.clock.advance(1000);
  });

  it.each([
    ["link without linkId", { scope: "link", reason: "r" }],
    ["volunteer without volunteerRef", { scope: "volunteer", reason: "r" }],
    ["campaign without campaignId", { scope: "campaign", reason: "r" }],
    ["phase without phase", { scope: "phase", contestId: "c", reason: "r" }],
    ["phase without contestId", { scope: "phase", phase: "p", reason: "r" }],
    ["contest without contestId", { scope: "contest", reason: "r" }],
    ["a field the scope does not use", { scope: "all", campaignId: "c", reason: "r" }],
    ["an unknown scope", { scope: "everything", reason: "r" }],
    ["no reason", { scope: "all" }],
    ["an unknown field", { scope: "all", reason: "r", force: true }],
  ])("400 validation: %s", async (_, body) => {
    const res = await revoke(body);
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("validation");
  });

  it.each([
    ["an unknown link", { scope: "link", linkId: "lnk_nope", reason: "r" }],
    ["an unknown campaign", { scope: "campaign", campaignId: "nope", reason: "r" }],
    ["an unknown contest", { scope: "contest", contestId: "nope", reason: "r" }],
  ])("404 not_found: %s", async (_, body) => {
    const res = await revoke(body);
    expect(res.status).toBe(404);
    expect(res.body.code).toBe("not_found");
  });

  it("404 not_found: an unknown phase", async () => {
    const { contestId } = await seedOpen(h);
    const res = await revoke({ scope: "phase", contestId, phase: "nope", reason: "r" });
    expect(res.status).toBe(404);
  });

  describe("coordinators", () => {
    it("may revoke their own campaign's links by link, volunteer and campaign", async () => {
      const { campaignId } = await seedOpen(h);
      const other = await seedOpen(h);
      const key = await createKey(h, "coordinator", campaignId);
      const mine = await issue(campaignId, "m");
      expect((await revoke({ scope: "link", linkId: mine, reason: "r" }, key.key)).status).toBe(201);
      expect(await status(mine)).toBe("revoked");

      // A volunteer revocation without campaignId is limited to the coordinator's campaign.
      const ours = await issue(campaignId, "both");
      const theirs = await issue(other.campaignId, "both");
      const res = await revoke({ scope: "volunteer", volunteerRef: "both", reason: "r" }, key.key);
      expect(res.status).toBe(201);
      expect(h.published.at(-1)?.change).toMatchObject({ revocation: { campaignId, actor: key.id } });
      expect(await status(ours)).toBe("revoked");
      expect(await status(theirs)).toBe("active");

      expect((await revoke({ scope: "campaign", campaignId, reason: "r" }, key.key)).status).toBe(201);
    });

    it("403 outside their campaign or for wider scopes", async () => {
      const { campaignId, contestId } = await seedOpen(h);
      const other = await seedOpen(h);
      const key = await createKey(h, "coordinator", campaignId);
      const theirs = await issue(other.campaignId, "t");
      for (const body of [
        { scope: "link", linkId: theirs, reason: "r" },
        { scope: "volunteer", volunteerRef: "t", campaignId: other.campaignId, reason: "r" },
        { scope: "campaign", campaignId: other.campaignId, reason: "r" },
        { scope: "phase", contestId, phase: "open", reason: "r" },
        { scope: "contest", contestId, reason: "r" },
        { scope: "all", reason: "r" },
      ]) {
        const res = await revoke(body, key.key);
        expect(res.status, body.scope).toBe(403);
        expect(res.body.code).toBe("forbidden");
      }
      expect(await status(theirs)).toBe("active");
    });

    it("an auditor may not revoke", async () => {
      const key = await createKey(h, "auditor");
      const res = await revoke({ scope: "all", reason: "r" }, key.key);
      expect(res.status).toBe(403);
    });
  });
});

describe("GET /v1/revocations", () => {
  it("pages newest first for admins and auditors", async () => {
    const { campaignId } = await seedOpen(h);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      h.clock.advance(10);
      ids.push(
        (await revoke({ scope: "volunteer", volunteerRef: `p${i}`, campaignId, reason: `r${i}` })).body.id,
      );
    }
    const auditor = await createKey(h, "auditor");
    const first = await callJson<{ items: { id: string; reason: string }[]; nextCursor: string }>(
      h,
      "GET",
      "/v1/revocations?limit=2",
      { token: auditor.key },
    );
    expect(first.status).toBe(200);
    expect(first.body.items.map((r) => r.id)).toEqual([ids[2], ids[1]]);
    expect(first.body.items[0]).toMatchObject({
      scope: "volunteer",
      volunteerRef: "p2",
      campaignId,
      reason: "r2",
    });
    const second = await callJson<{ items: { id: string }[] }>(
      h,
      "GET",
      `/v1/revocations?limit=2&cursor=${first.body.nextCursor}`,
    );
    expect(second.body.items[0]?.id).toBe(ids[0]);
  });

  it("403 for a coordinator", async () => {
    const { campaignId } = await seedOpen(h);
    const key = await createKey(h, "coordinator", campaignId);
    const res = await callJson(h, "GET", "/v1/revocations", { token: key.key });
    expect(res.status).toBe(403);
    expect(res.body.code).toBe("forbidden");
  });
});
