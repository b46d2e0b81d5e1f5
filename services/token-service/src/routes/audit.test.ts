import { appendEvents } from "@phaselock/audit";
import { asDatabaseOwner } from "@phaselock/audit/testing";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, callJson, createHarness, createKey, type Harness, seedOpen, T0 } from "../test-support.ts";

let h: Harness;
let campaignId: string;
beforeAll(async () => {
  // The admin events of the setup stay out of the table: the tests count the chain's rows.
  h = await createHarness({ memoryOnlyAudit: true });
  ({ campaignId } = await seedOpen(h));
  const at = (s: number) => new Date(Date.parse(T0) + s * 1000);
  await appendEvents(h.handle.db, [
    { type: "link.issued", at: at(0), actor: "admin", campaignId, linkId: "lnk_a", decision: "allow" },
    {
      type: "access",
      at: at(1),
      actor: "v1",
      campaignId,
      linkId: "lnk_a",
      decision: "deny",
      reason: "revoked",
    },
    { type: "access", at: at(2), actor: "v1", campaignId: "other", linkId: "lnk_b", decision: "allow" },
    { type: "contest.replaced", at: at(3), actor: "admin", data: { contestId: "x" } },
  ]);
}, 60_000);
afterAll(() => h.close());

type Page = { items: { type: string; seq: number; hash: string; at: string }[]; nextCursor: string | null };

describe("GET /v1/audit", () => {
  it("lists events newest first, filtered", async () => {
    const all = await callJson<Page>(h, "GET", "/v1/audit");
    expect(all.status).toBe(200);
    expect(all.body.items.map((e) => e.seq)).toEqual([4, 3, 2, 1]);
    const denied = await callJson<Page>(h, "GET", `/v1/audit?campaignId=${campaignId}&decision=deny`);
    expect(denied.body.items).toEqual([expect.objectContaining({ type: "access", seq: 2 })]);
    const byLink = await callJson<Page>(h, "GET", "/v1/audit?linkId=lnk_b");
    expect(byLink.body.items.map((e) => e.seq)).toEqual([3]);
    const since = await callJson<Page>(
      h,
      "GET",
      `/v1/audit?since=${new Date(Date.parse(T0) + 2000).toISOString()}`,
    );
    expect(since.body.items.map((e) => e.seq)).toEqual([4, 3]);
  });

  it("takes since as a date alone (its start, UTC), as pnpm audit:export --since and the console do", async () => {
    // T0 is 2020-03-01T12:00Z: the day holds all four events, the next day none.
    const day = await callJson<Page>(h, "GET", "/v1/audit?since=2020-03-01");
    expect([day.status, day.body.items.map((e) => e.seq)]).toEqual([200, [4, 3, 2, 1]]);
    const next = await callJson<Page>(h, "GET", "/v1/audit?since=2020-03-02");
    expect([next.status, next.body.items]).toEqual([200, []]);
    const exported = await call(h, "GET", "/v1/audit/export?since=2020-03-02");
    expect(exported.status).toBe(200);
    for (const bad of ["2020-13-01", "2020-03-1", "yesterday", "2020-03-01T12:00"]) {
      const res = await callJson(h, "GET", `/v1/audit?since=${bad}`);
      expect([bad, res.status, res.body.code]).toEqual([bad, 400, "validation"]);
    }
  });

  it("refuses a campaignId filter naming no campaign, as the other lists do", async () => {
    const res = await callJson(h, "GET", "/v1/audit?campaignId=no-such-campaign");
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("validation");
  });

  it("pages with a cursor", async () => {
    const first = await callJson<Page>(h, "GET", "/v1/audit?limit=3");
    expect(first.body.items).toHaveLength(3);
    const second = await callJson<Page>(h, "GET", `/v1/audit?limit=3&cursor=${first.body.nextCursor}`);
    expect(second.body.items.map((e) => e.seq)).toEqual([1]);
    expect(second.body.nextCursor).toBeNull();
    const bad = await callJson(h, "GET", "/v1/audit?cursor=abc");
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe("validation");
  });

  it("is open to admins and auditors only", async () => {
    const auditor = await createKey(h, "auditor");
    const coordinator = await createKey(h, "coordinator", campaignId);
    expect((await callJson(h, "GET", "/v1/audit", { token: auditor.key })).status).toBe(200);
    const res = await callJson(h, "GET", "/v1/audit", { token: coordinator.key });
    expect(res.status).toBe(403);
    expect(res.body.code).toBe("forbidden");
    expect((await callJson(h, "GET", "/v1/audit/verify", { token: coordinator.key })).status).toBe(403);
  });
});

describe("GET /v1/audit/verify", () => {
  it("reports an intact chain with its head, then the first broken event", async () => {
    const ok = await callJson<{ ok: boolean; events: number; head: string }>(h, "GET", "/v1/audit/verify");
    expect(ok.status).toBe(200);
    const latest = (await callJson<Page>(h, "GET", "/v1/audit?limit=1")).body.items[0]!;
    expect(ok.body).toEqual({ ok: true, events: 4, head: latest.hash });

    await asDatabaseOwner(h.handle.db, (tx) =>
      tx.execute(sql`update audit_events set reason = 'tampered' where seq = 2`),
    );
    const broken = await callJson(h, "GET", "/v1/audit/verify");
    expect(broken.body).toMatchObject({ ok: false, brokenAt: { seq: 2, reason: "hash_mismatch" } });
  });
});
