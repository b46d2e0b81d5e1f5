import { createLogger } from "@phaselock/core";
import { lineSink } from "@phaselock/testkit";
import { describe, expect, it } from "vitest";
import { createApp } from "./app.ts";

const SECRET = "test-gateway-secret-0123456789abcdef";
const viaGateway = {
  "x-phaselock-gateway-secret": SECRET,
  "x-phaselock-campaign": "starmer-2020",
  "x-phaselock-volunteer": "vol-1",
  "x-phaselock-link": "lnk_1",
  "x-phaselock-scopes": "calls:read calls:write",
};

describe("phone bank /metrics", () => {
  it("answers without the gateway's secret (it is scraped directly), behind METRICS_TOKEN when set", async () => {
    const open = createApp({ secret: SECRET });
    expect((await open.request("/calls/next", { headers: viaGateway })).status).toBe(200);
    const res = await open.request("/metrics");
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toMatch(
      /phaselock_phonebank_request_duration_seconds_count\{[^}]*route="\/calls\/next"[^}]*\} 1/,
    );

    const guarded = createApp({ secret: SECRET, metricsToken: "metrics-token-0123456789" });
    for (const authorization of [undefined, `Bearer ${SECRET}`, "Bearer metrics-token-nope-0123"]) {
      const refused = await guarded.request("/metrics", {
        headers: authorization ? { authorization } : {},
      });
      expect(refused.status).toBe(401);
      expect(((await refused.json()) as { code: string }).code).toBe("unauthorized");
    }
    const ok = await guarded.request("/metrics", {
      headers: { authorization: "Bearer metrics-token-0123456789" },
    });
    expect(ok.status).toBe(200);
  });
});

describe("phone bank security headers and request lines", () => {
  it("walks every HTML page: CSP with frame-ancestors 'none', nosniff, Referrer-Policy", async () => {
    const app = createApp({ secret: SECRET });
    const paths = [
      ...new Set(app.routes.filter((r) => r.method === "GET" && !/[:*]/.test(r.path)).map((r) => r.path)),
    ];
    let pages = 0;
    for (const path of paths) {
      const res = await app.request(path, { headers: { ...viaGateway, accept: "text/html" } });
      expect(res.headers.get("x-content-type-options"), path).toBe("nosniff");
      if (!(res.headers.get("content-type") ?? "").startsWith("text/html")) continue;
      pages++;
      expect(res.headers.get("content-security-policy"), path).toMatch(/frame-ancestors 'none'/);
      expect(res.headers.get("content-security-policy"), path).toMatch(/default-src 'none'/);
      expect(res.headers.get("referrer-policy"), path).toBe("no-referrer");
      expect(res.headers.get("strict-transport-security"), path).toBeNull();
    }
    expect(pages).toBeGreaterThan(0);
    const https = await app.request("/", { headers: { ...viaGateway, "x-forwarded-proto": "https" } });
    expect(https.headers.get("strict-transport-security")).toMatch(/^max-age=/);
  });

  it("writes one JSON line per request: route, path without query, status, request id", async () => {
    const lines: string[] = [];
    const logger = createLogger({
      service: "phonebank",
      destination: lineSink(lines),
    });
    const app = createApp({ secret: SECRET, logger });
    await app.request("/members/m_000001?secret=1", {
      headers: { ...viaGateway, "x-request-id": "req_pb_000001" },
    });
    await app.request("/calls/next");
    expect(lines).toHaveLength(2);
    const [first, second] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(first).toMatchObject({
      level: "info",
      service: "phonebank",
      msg: "request",
      method: "GET",
      route: "/members/:id",
      path: "/members/m_000001",
      requestId: "req_pb_000001",
    });
    expect(second).toMatchObject({ status: 401 });
    expect(lines.join("\n")).not.toContain(SECRET);
    expect(lines.join("\n")).not.toContain("secret=1");
  });

  it("writes no link token or code of a path it has no route for (a link sent to the wrong port)", async () => {
    const lines: string[] = [];
    const logger = createLogger({
      service: "phonebank",
      destination: lineSink(lines),
    });
    const app = createApp({ secret: SECRET, logger });
    const code = "Zq3k9XbT2mWv8LpR4sNa1c";
    const token = "eyJhbGciOiJFZERTQSJ9.eyJqdGkiOiJsbmtfMSJ9.c2lnbmF0dXJlLW9mLXRoZS10ZXN0";
    const cases: [target: string, path: string][] = [
      [`/l/${code}`, "/…"],
      [`/x/${token}`, "/…"],
      [`/calls/${code}/outcome/x`, "/calls/…"],
      [`/members/export/${code}`, "/members/export/…"],
      [`/calls/next?token=${code}&t=${token}`, "/calls/next"],
    ];
    for (const [target] of cases) await app.request(target, { headers: viaGateway });
    expect(lines.map((l) => (JSON.parse(l) as { path: string }).path)).toEqual(cases.map(([, p]) => p));
    expect(lines.join("\n")).not.toContain(code);
    expect(lines.join("\n")).not.toContain(token);
  });
});
