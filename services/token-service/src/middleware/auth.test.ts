import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ADMIN, call, callJson, createHarness, createKey, type Harness, seedOpen } from "../test-support.ts";
import { auth } from "./auth.ts";

// Wrap safeEqual so the test can see the admin token is compared in constant time.
const safeEqualSpy = vi.hoisted(() => ({ calls: [] as [string, string][] }));
vi.mock("@phaselock/core", async (importOriginal) => {
  const core = await importOriginal<typeof import("@phaselock/core")>();
  return {
    ...core,
    safeEqual: (a: string, b: string) => {
      safeEqualSpy.calls.push([a, b]);
      return core.safeEqual(a, b);
    },
  };
});

let h: Harness;
let campaignId: string;
beforeAll(async () => {
  h = await createHarness();
  ({ campaignId } = await seedOpen(h));
}, 60_000);
afterAll(() => h.close());

const ADMIN_ROUTE = "/v1/api-keys";

describe("auth middleware", () => {
  it("refuses bad options when built", () => {
    expect(() => auth({ roles: [] })).toThrow();
    expect(() => auth({ roles: ["root" as "admin"] })).toThrow();
  });

  it("401 without a token, with WWW-Authenticate: Bearer", async () => {
    const { res, body } = await callJson(h, "POST", ADMIN_ROUTE, { token: null, body: { role: "auditor" } });
    expect(res.status).toBe(401);
    expect(body.code).toBe("unauthorized");
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  });

  it.each([
    ["a wrong token", "Bearer not-the-admin-token-but-long-enough-000000"],
    ["a Basic header", `Basic ${Buffer.from(`admin:${ADMIN}`).toString("base64")}`],
    ["an empty bearer", "Bearer "],
    ["the admin token with a suffix", `Bearer ${ADMIN}x`],
    ["an API-key-shaped secret nobody issued", "Bearer plk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],
  ])("401 for %s", async (_, header) => {
    const res = await h.app.request(ADMIN_ROUTE, {
      method: "POST",
      headers: { Authorization: header, "Content-Type": "application/json" },
      body: JSON.stringify({ role: "auditor" }),
    });
    expect(res.status).toBe(401);
    const text = await res.text();
    expect(JSON.parse(text).code).toBe("unauthorized");
    // The presented credential is never echoed.
    const secret = header.split(" ")[1];
    if (secret) expect(text).not.toContain(secret);
  });

  it("accepts the admin token, compared with safeEqual", async () => {
    safeEqualSpy.calls.length = 0;
    const { status } = await callJson(h, "GET", "/v1/revocations");
    expect(status).toBe(200);
    expect(safeEqualSpy.calls).toContainEqual([ADMIN, ADMIN]);
  });

  it("compares a wrong token with safeEqual too, never ===", async () => {
    safeEqualSpy.calls.length = 0;
    await callJson(h, "GET", "/v1/revocations", { token: "wrong-token-of-some-length-000000000" });
    expect(safeEqualSpy.calls).toContainEqual(["wrong-token-of-some-length-000000000", ADMIN]);
  });

  it("403 forbidden for a role the route does not admit", async () => {
    const auditor = await createKey(h, "auditor");
    const coordinator = await createKey(h, "coordinator", campaignId);
    for (const key of [auditor.key, coordinator.key]) {
      const { status, body } = await callJson(h, "POST", ADMIN_ROUTE, {
        token: key,
        body: { role: "auditor" },
      });
      expect(status).toBe(403);
      expect(body.code).toBe("forbidden");
    }
  });

  it("an admin API key has the admin role", async () => {
    const admin = await createKey(h, "admin");
    const { status } = await callJson(h, "POST", ADMIN_ROUTE, {
      token: admin.key,
      body: { role: "auditor" },
    });
    expect(status).toBe(201);
  });

  it("authenticates before validating the body", async () => {
    const { status } = await callJson(h, "POST", ADMIN_ROUTE, { token: null, rawBody: "{not json" });
    expect(status).toBe(401);
  });
});

describe("API keys", () => {
  it("creates a key shown once, stored hashed", async () => {
    const { status, body, res } = await callJson<Record<string, unknown> & { key: string; id: string }>(
      h,
      "POST",
      ADMIN_ROUTE,
      { body: { role: "coordinator", campaignId, label: "North phone bank" } },
    );
    expect(status).toBe(201);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(body).toEqual({
      id: expect.stringMatching(/^key_/),
      key: expect.stringMatching(/^plk_/),
      role: "coordinator",
      campaignId,
      label: "North phone bank",
    });
    const event = h.audit.events.find((e) => e.type === "api_key.created" && e.data?.keyId === body.id);
    expect(event).toMatchObject({ actor: "admin", campaignId });
    expect(JSON.stringify(h.audit.events)).not.toContain(body.key);
  });

  it.each([
    ["coordinator without campaignId", { role: "coordinator" }],
    ["auditor with campaignId", { role: "auditor", campaignId: "x" }],
    ["admin with campaignId", { role: "admin", campaignId: "x" }],
    ["unknown role", { role: "root" }],
    ["unknown field", { role: "auditor", scopes: ["all"] }],
    ["empty label", { role: "auditor", label: "  " }],
  ])("400 validation: %s", async (_, body) => {
    const res = await callJson(h, "POST", ADMIN_ROUTE, { body });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("validation");
  });

  it("names the role's campaign rule in plain words", async () => {
    const detail = async (body: object) =>
      JSON.stringify((await callJson(h, "POST", ADMIN_ROUTE, { body })).body);
    expect(await detail({ role: "auditor", campaignId: "x" })).toContain(
      "an auditor key is not bound to a campaign",
    );
    expect(await detail({ role: "admin", campaignId: "x" })).toContain(
      "an admin key is not bound to a campaign",
    );
  });

  it("404 for a coordinator key of an unknown campaign", async () => {
    const res = await callJson(h, "POST", ADMIN_ROUTE, {
      body: { role: "coordinator", campaignId: "no-such" },
    });
    expect(res.status).toBe(404);
    expect(res.body.code).toBe("not_found");
  });

  it("a deleted key stops working at once", async () => {
    const key = await createKey(h, "coordinator", campaignId);
    expect((await call(h, "GET", "/v1/links", { token: key.key })).status).toBe(200);
    const del = await call(h, "DELETE", `${ADMIN_ROUTE}/${key.id}`);
    expect(del.status).toBe(204);
    const after = await callJson(h, "GET", "/v1/links", { token: key.key });
    expect(after.status).toBe(401);
    expect(after.body.code).toBe("unauthorized");
    expect(h.published.at(-1)?.change).toEqual({ type: "api-key-deleted", id: key.id });
    expect(h.audit.events.some((e) => e.type === "api_key.deleted" && e.data?.keyId === key.id)).toBe(true);
    // Deleting again: nothing left to delete.
    const again = await callJson(h, "DELETE", `${ADMIN_ROUTE}/${key.id}`);
    expect(again.status).toBe(404);
    expect(again.body.code).toBe("not_found");
  });

  it("only an admin may delete keys", async () => {
    const victim = await createKey(h, "auditor");
    const coordinator = await createKey(h, "coordinator", campaignId);
    const res = await callJson(h, "DELETE", `${ADMIN_ROUTE}/${victim.id}`, { token: coordinator.key });
    expect(res.status).toBe(403);
    expect((await call(h, "GET", "/v1/revocations", { token: victim.key })).status).toBe(200);
  });

  it("a key still works for its own campaign only", async () => {
    const key = await createKey(h, "coordinator", campaignId);
    const other = await seedOpen(h);
    const res = await callJson(h, "GET", `/v1/links?campaignId=${other.campaignId}`, { token: key.key });
    expect(res.status).toBe(403);
  });
});
