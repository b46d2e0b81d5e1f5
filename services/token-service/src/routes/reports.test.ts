import { appendEvents } from "@phaselock/audit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callJson, createHarness, createKey, type Harness, seedOpen, T0 } from "../test-support.ts";

let h: Harness;
let campaignId: string;
let coordinator: { id: string; key: string };
let byCoordinator: string;
let byAdmin: string;

beforeAll(async () => {
  h = await createHarness();
  ({ campaignId } = await seedOpen(h));
  coordinator = await createKey(h, "coordinator", campaignId);
  const issue = async (token: string | undefined, ref: string) => {
    const res = await callJson<{ id: string }>(h, "POST", "/v1/links", {
      token,
      body: { campaignId, phase: "open", volunteer: { ref }, scopes: ["calls:read"] },
    });
    if (res.status !== 201) throw new Error(`issue failed: ${res.status}`);
    return res.body.id;
  };
  byCoordinator = await issue(coordinator.key, "v-coord");
  byAdmin = await issue(undefined, "v-admin");
  const at = (s: number) => new Date(Date.parse(T0) + s * 1000);
  const deny = (linkId: string, reason: string, s: number) => ({
    type: "access",
    at: at(s),
    campaignId,
    linkId,
    decision: "deny" as const,
    reason,
  });
  await appendEvents(h.handle.db, [
    deny(byCoordinator, "phase_closed", 1),
    deny(byCoordinator, "phase_closed", 2),
    deny(byCoordinator, "revoked", 3),
    deny(byAdmin, "expired", 4),
    deny(byAdmin, "scope_denied", 5), // not a dead link: a live link asking for too much
    { type: "access", at: at(6), campaignId, linkId: byAdmin, decision: "allow" },
  ]);
}, 60_000);
afterAll(() => h.close());

type Report = {
  items: { campaignId: string; issuedBy: string; reason: string; attempts: number; links: number }[];
};

describe("GET /v1/reports/dead-links", () => {
  it("counts dead-link attempts per campaign, issuing coordinator and reason", async () => {
    const res = await callJson<Report>(
      h,
      "GET",
      `/v1/reports/dead-links?since=${T0}&campaignId=${campaignId}`,
    );
    expect(res.status).toBe(200);
    expect(res.body.items.map((r) => [r.issuedBy, r.reason, r.attempts, r.links])).toEqual([
      [coordinator.id, "phase_closed", 2, 1],
      ["admin", "expired", 1, 1],
      [coordinator.id, "revoked", 1, 1],
    ]);
  });

  it("is for admins only", async () => {
    const auditor = await createKey(h, "auditor");
    expect((await callJson(h, "GET", "/v1/reports/dead-links", { token: auditor.key })).status).toBe(403);
    expect((await callJson(h, "GET", "/v1/reports/dead-links", { token: coordinator.key })).status).toBe(403);
    expect((await callJson(h, "GET", "/v1/reports/dead-links", { token: null })).status).toBe(401);
  });

  it("refuses an unknown campaignId 400 validation, never an empty report", async () => {
    const res = await callJson<{ code: string; errors?: { in: string; pointer: string }[] }>(
      h,
      "GET",
      "/v1/reports/dead-links?campaignId=no-such-campaign",
    );
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("validation");
    expect(res.body.errors?.[0]).toMatchObject({ in: "query", pointer: "#/campaignId" });
  });
});
