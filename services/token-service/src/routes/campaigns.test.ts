import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  call,
  callJson,
  createHarness,
  createKey,
  type Harness,
  seedContest,
  T0,
  uid,
} from "../test-support.ts";

let h: Harness;
let contestId: string;
beforeAll(async () => {
  h = await createHarness();
  ({ contestId } = await seedContest(h));
}, 60_000);
afterAll(() => h.close());

describe("PUT /v1/campaigns/:campaignId", () => {
  it("creates and updates a campaign, publishing each change", async () => {
    const id = uid("campaign");
    const created = await callJson(h, "PUT", `/v1/campaigns/${id}`, {
      body: { name: "Starmer 2020", contestId },
    });
    expect(created.status).toBe(200);
    expect(created.body).toEqual({ id, name: "Starmer 2020", contestId, limits: {} });
    expect(h.published.at(-1)).toMatchObject({
      change: { type: "campaign", campaign: { id, name: "Starmer 2020" } },
    });

    const updated = await callJson(h, "PUT", `/v1/campaigns/${id}`, {
      body: { name: "Starmer", contestId, limits: { requestsPerMinute: 30, recordsPerHour: 200 } },
    });
    expect(updated.status).toBe(200);
    expect(updated.body.limits).toEqual({ requestsPerMinute: 30, recordsPerHour: 200 });
    const versions = h.published.slice(-2).map((m) => m.version);
    expect(versions[1]).toBe(versions[0]! + 1);
    expect(h.audit.events.at(-1)).toMatchObject({
      type: "campaign.upserted",
      campaignId: id,
      actor: "admin",
    });
  });

  it("keeps a contact for volunteers' pages, trimmed; PUT without one clears it", async () => {
    const id = uid("campaign");
    const contact = "Jo Bloggs, jo@example.org or 07700 900456";
    const created = await callJson(h, "PUT", `/v1/campaigns/${id}`, {
      body: { name: "Starmer 2020", contestId, contact: `  ${contact} ` },
    });
    expect(created.status).toBe(200);
    expect(created.body).toEqual({ id, name: "Starmer 2020", contestId, limits: {}, contact });
    expect(h.published.at(-1)).toMatchObject({ change: { type: "campaign", campaign: { id, contact } } });
    expect(await h.deps.repos.campaigns.get(id)).toMatchObject({ contact });

    const cleared = await callJson(h, "PUT", `/v1/campaigns/${id}`, {
      body: { name: "Starmer 2020", contestId, contact: null },
    });
    expect(cleared.body).not.toHaveProperty("contact");
    expect(await h.deps.repos.campaigns.get(id)).not.toHaveProperty("contact");
  });

  it("404 for an unknown contest", async () => {
    const res = await callJson(h, "PUT", `/v1/campaigns/${uid("c")}`, {
      body: { name: "x", contestId: "nope" },
    });
    expect(res.status).toBe(404);
    expect(res.body.code).toBe("not_found");
  });

  it("409 when moving a campaign to another contest", async () => {
    const id = uid("campaign");
    await call(h, "PUT", `/v1/campaigns/${id}`, { body: { name: "x", contestId } });
    const other = await seedContest(h);
    const res = await callJson(h, "PUT", `/v1/campaigns/${id}`, {
      body: { name: "x", contestId: other.contestId },
    });
    expect(res.status).toBe(409);
    expect(res.body.code).toBe("conflict");
  });

  it.each([
    ["missing name", { contestId: "x" }],
    ["unknown field", { name: "x", contestId: "x", budget: 5 }],
    ["unknown limit", { name: "x", contestId: "x", limits: { callsPerDay: 5 } }],
    ["zero limit", { name: "x", contestId: "x", limits: { requestsPerMinute: 0 } }],
    ["empty contact", { name: "x", contestId: "x", contact: "  " }],
    ["contact over 200 characters", { name: "x", contestId: "x", contact: "a".repeat(201) }],
    ["contact with a line break", { name: "x", contestId: "x", contact: "Jo\nBloggs" }],
    ["contact not text", { name: "x", contestId: "x", contact: 7 }],
  ])("400 validation: %s", async (_, body) => {
    const res = await callJson(h, "PUT", `/v1/campaigns/${uid("c")}`, { body });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("validation");
  });

  it("403 for a coordinator", async () => {
    const { campaignId } = await seedContest(h);
    const key = await createKey(h, "coordinator", campaignId);
    const res = await callJson(h, "PUT", `/v1/campaigns/${campaignId}`, {
      token: key.key,
      body: { name: "mine now", contestId },
    });
    expect(res.status).toBe(403);
  });
});

describe("entitlements", () => {
  it("grants and withdraws, publishing each with its version", async () => {
    const id = uid("campaign");
    await call(h, "PUT", `/v1/campaigns/${id}`, { body: { name: "x", contestId } });
    const granted = await callJson(h, "PUT", `/v1/campaigns/${id}/entitlements/ballot`, {
      body: { scopes: ["calls:read", "members:read", "calls:read"] },
    });
    expect(granted.status).toBe(200);
    expect(granted.body).toEqual({ campaignId: id, phase: "ballot", scopes: ["calls:read", "members:read"] });
    const grantMsg = h.published.at(-1)!;
    expect(grantMsg.change).toEqual({
      type: "entitlement",
      campaignId: id,
      phase: "ballot",
      scopes: ["calls:read", "members:read"],
    });
    expect(h.audit.events.at(-1)).toMatchObject({ type: "entitlement.granted", campaignId: id });

    const withdrawn = await call(h, "DELETE", `/v1/campaigns/${id}/entitlements/ballot`);
    expect(withdrawn.status).toBe(204);
    const withdrawMsg = h.published.at(-1)!;
    expect(withdrawMsg).toEqual({
      version: grantMsg.version + 1,
      change: { type: "entitlement", campaignId: id, phase: "ballot", scopes: null },
    });
    expect(h.audit.events.at(-1)).toMatchObject({ type: "entitlement.withdrawn", campaignId: id });
    expect(await h.deps.repos.entitlements.get(id, "ballot")).toBeNull();

    // Withdrawing again is a no-op: 204, nothing published.
    const count = h.published.length;
    expect((await call(h, "DELETE", `/v1/campaigns/${id}/entitlements/ballot`)).status).toBe(204);
    expect(h.published.length).toBe(count);
  });

  it("404 for a phase its contest does not have, or an unknown campaign", async () => {
    const id = uid("campaign");
    await call(h, "PUT", `/v1/campaigns/${id}`, { body: { name: "x", contestId } });
    for (const [method, path] of [
      ["PUT", `/v1/campaigns/${id}/entitlements/final`],
      ["DELETE", `/v1/campaigns/${id}/entitlements/final`],
      ["PUT", "/v1/campaigns/nope/entitlements/ballot"],
      ["DELETE", "/v1/campaigns/nope/entitlements/ballot"],
    ] as const) {
      const res = await callJson(
        h,
        method,
        path,
        method === "PUT" ? { body: { scopes: ["calls:read"] } } : {},
      );
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.body.code).toBe("not_found");
    }
  });

  it("withdraws a grant of a phase a later timeline dropped, so it cannot come back with the phase", async () => {
    const { contestId, campaignId, phases } = await seedContest(h);
    const timeline = (p: typeof phases) => ({ body: { name: "Leadership 2020", phases: p } });
    expect((await call(h, "PUT", `/v1/contests/${contestId}`, timeline(phases.slice(0, 2)))).status).toBe(
      200,
    );
    // The campaign still shows the grant: the admin must be able to withdraw what it lists.
    type Campaign = { entitlements: Record<string, string[]> };
    const listed = await callJson<Campaign>(h, "GET", `/v1/campaigns/${campaignId}`);
    expect(Object.keys(listed.body.entitlements)).toContain("ballot");
    expect((await call(h, "DELETE", `/v1/campaigns/${campaignId}/entitlements/ballot`)).status).toBe(204);
    expect(h.published.at(-1)!.change).toEqual({
      type: "entitlement",
      campaignId,
      phase: "ballot",
      scopes: null,
    });
    expect(await h.deps.repos.entitlements.get(campaignId, "ballot")).toBeNull();
    // The phase put back grants nothing of itself.
    expect((await call(h, "PUT", `/v1/contests/${contestId}`, timeline(phases))).status).toBe(200);
    expect(
      Object.keys((await callJson<Campaign>(h, "GET", `/v1/campaigns/${campaignId}`)).body.entitlements),
    ).not.toContain("ballot");
    // A phase the contest lacks and the campaign holds no grant for is still unknown.
    expect((await call(h, "DELETE", `/v1/campaigns/${campaignId}/entitlements/final`)).status).toBe(404);
  });

  it.each([
    ["unknown scope", { scopes: ["calls:read", "everything"] }],
    ["empty scopes", { scopes: [] }],
    ["unknown field", { scopes: ["calls:read"], until: T0 }],
  ])("400 validation: %s", async (_, body) => {
    const res = await callJson(h, "PUT", `/v1/campaigns/x/entitlements/ballot`, { body });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("validation");
  });

  it("403 for a coordinator, even of that campaign", async () => {
    const { campaignId } = await seedContest(h);
    const key = await createKey(h, "coordinator", campaignId);
    const res = await callJson(h, "PUT", `/v1/campaigns/${campaignId}/entitlements/ballot`, {
      token: key.key,
      body: { scopes: ["members:export"] },
    });
    expect(res.status).toBe(403);
    expect(res.body.code).toBe("forbidden");
  });
});
