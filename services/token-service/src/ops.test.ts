import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN, call, createHarness, type Harness, seedOpen } from "./test-support.ts";

// One service for the file: each test reads only what it made (counters are checked by value).
let h: Harness;
beforeAll(async () => {
  h = await createHarness();
});
afterAll(() => h.close());

const line = (text: string, prefix: string) => text.split("\n").find((l) => l.startsWith(prefix));

describe("token service /metrics", () => {
  it("counts issued links and times requests by route pattern, never by path", async () => {
    const { campaignId } = await seedOpen(h);
    const issue = (ref: string) =>
      call(h, "POST", "/v1/links", {
        body: { campaignId, phase: "open", volunteer: { ref }, scopes: ["calls:read"] },
      });
    expect((await issue("v-1")).status).toBe(201);
    expect((await issue("v-2")).status).toBe(201);
    expect(
      (
        await call(h, "POST", "/v1/links/batch", {
          body: {
            campaignId,
            phase: "open",
            volunteers: [{ ref: "v-3" }, { ref: "v-4" }],
            scopes: ["calls:read"],
          },
        })
      ).status,
    ).toBe(201);
    const res = await call(h, "GET", "/metrics", { token: null });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(line(text, "phaselock_token_service_links_issued_total")).toMatch(/ 4$/);
    expect(text).toMatch(
      /phaselock_token_service_request_duration_seconds_count\{[^}]*route="\/v1\/links"[^}]*status_class="2xx"[^}]*\} 2/,
    );
    expect(text).toMatch(
      /route="\/v1\/campaigns\/:id\/entitlements\/:phase"|route="\/v1\/campaigns\/:[a-zA-Z]+/,
    );
    expect(text).not.toContain(campaignId);
    expect(text).toContain("phaselock_token_service_audit_checkpoint_size");
    expect(text).toContain("phaselock_token_service_audit_checkpoint_age_seconds");
  });

  it("requires METRICS_TOKEN as a bearer when set: the admin token is not it", async () => {
    h.deps.metricsToken = "metrics-token-0123456789";
    for (const token of [null, ADMIN, "metrics-token-wrong-0123"]) {
      const res = await call(h, "GET", "/metrics", { token });
      expect(res.status).toBe(401);
      expect(res.headers.get("content-type")).toBe("application/problem+json");
      const body = (await res.json()) as { code: string; requestId: string };
      expect(body.code).toBe("unauthorized");
      expect(body.requestId).toBe(res.headers.get("x-request-id"));
    }
    expect((await call(h, "GET", "/metrics", { token: "metrics-token-0123456789" })).status).toBe(200);
    h.deps.metricsToken = undefined;
  });

  it("refuses a query parameter, as every other route does: the scrape takes none", async () => {
    const res = await call(h, "GET", "/metrics?format=json", { token: null });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { code: string; errors: { pointer: string; detail: string }[] };
    expect(body.code).toBe("validation");
    expect(body.errors).toEqual([
      expect.objectContaining({ pointer: "#/format", detail: expect.stringContaining("takes none") }),
    ]);
    expect((await call(h, "GET", "/metrics", { token: null })).status).toBe(200);
  });

  it("labels requests by a bounded set of methods and route patterns, whatever a client sends", async () => {
    for (let i = 0; i < 5; i++) await call(h, "GET", `/no-such-route-${i}/x${i}`);
    await call(h, `CUSTOM${1}` as "GET", "/v1/links");
    await call(h, "get-ish" as "GET", "/v1/links");
    const text = await (await call(h, "GET", "/metrics", { token: null })).text();
    const labels = text
      .split("\n")
      .filter((l) => l.startsWith("phaselock_token_service_request_duration_seconds_count"));
    expect(labels.join("\n")).not.toMatch(/CUSTOM1|get-ish|no-such-route/);
    expect(labels.join("\n")).toMatch(/method="other"/);
  });
});

describe("token service security headers", () => {
  /** Every GET route without a path parameter: whatever answers HTML must carry the page headers. */
  const htmlRoutes = async (harness: Harness) => {
    const paths = [
      ...new Set(
        harness.app.routes
          .filter((r) => r.method === "GET" && !r.path.includes(":") && !r.path.includes("*"))
          .map((r) => r.path),
      ),
    ];
    const pages: { path: string; res: Response }[] = [];
    for (const path of paths) {
      const res = await call(harness, "GET", path, { headers: { accept: "text/html" } });
      if ((res.headers.get("content-type") ?? "").startsWith("text/html")) pages.push({ path, res });
    }
    return pages;
  };

  it("walks every HTML page: CSP with frame-ancestors 'none', nosniff, Referrer-Policy; HSTS only behind HTTPS", async () => {
    const pages = await htmlRoutes(h);
    expect(pages.map((p) => p.path)).toContain("/docs");
    for (const { path, res } of pages) {
      expect(res.headers.get("content-security-policy"), path).toMatch(/frame-ancestors 'none'/);
      expect(res.headers.get("content-security-policy"), path).toMatch(/default-src '(none|self)'/);
      expect(res.headers.get("x-content-type-options"), path).toBe("nosniff");
      expect(res.headers.get("referrer-policy"), path).toBeTruthy();
      expect(res.headers.get("x-frame-options"), path).toBe("DENY");
      expect(res.headers.get("strict-transport-security"), path).toBeNull();
    }
    const https = await call(h, "GET", "/docs", { headers: { "x-forwarded-proto": "https" } });
    expect(https.headers.get("strict-transport-security")).toMatch(/^max-age=\d+/);
  });

  it("sends nosniff on JSON answers and problems too", async () => {
    for (const [path, token] of [
      ["/healthz", null],
      ["/v1/contests", ADMIN],
      ["/v1/contests", null],
      ["/no-such-route", null],
    ] as const) {
      const res = await call(h, "GET", path, { token });
      expect(res.headers.get("content-type"), path).toMatch(/json/);
      expect(res.headers.get("x-content-type-options"), path).toBe("nosniff");
    }
  });
});
