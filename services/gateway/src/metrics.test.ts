import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createLogger, createMetricsRegistry } from "@phaselock/core";
import { lineSink } from "@phaselock/testkit";
import { afterEach, describe, expect, it } from "vitest";
import { createGatewayMetrics, REFUSAL_CODES } from "./metrics.ts";
import { createNodeHandler } from "./node-handler.ts";
import { gatewayFixture } from "./test-support.ts";

/** A fixture gateway whose deps count into a registry of their own. */
async function metered() {
  const g = await gatewayFixture();
  const registry = createMetricsRegistry("gateway");
  const pool = { size: 4, connected: 2, free: 1, pending: 0, running: 1 };
  g.deps.metrics = createGatewayMetrics(registry, {
    feedAgeSeconds: () => 1.5,
    auditPending: () => 7,
    verifyCache: () => ({ hits: 3, misses: 1, size: 2 }),
    upstreamPool: () => pool,
  });
  const scrape = async (headers: Record<string, string> = {}) => g.app.request("/metrics", { headers });
  const text = async () => (await scrape()).text();
  return { ...g, registry, scrape, text };
}

/** The value of a series in Prometheus text, its labels in any order (`name{a="1",b="2"}`). */
const value = (text: string, series: string): number | undefined => {
  const parse = (s: string) => {
    const m = /^([^{\s]+)(?:\{(.*)\})?$/.exec(s);
    return { name: m?.[1], labels: new Set((m?.[2] ?? "").split(",").filter(Boolean)) };
  };
  const want = parse(series);
  for (const line of text.split("\n")) {
    const cut = line.lastIndexOf(" ");
    const got = parse(line.slice(0, cut));
    if (got.name !== want.name || got.labels.size !== want.labels.size) continue;
    if ([...want.labels].every((l) => got.labels.has(l))) return Number(line.slice(cut + 1));
  }
  return undefined;
};

describe("gateway /metrics", () => {
  it("counts decisions by code: allowed as ok, every refusal by its code", async () => {
    const g = await metered();
    const session = await g.session();
    expect((await g.bearer(session)).status).toBe(200);
    expect((await g.bearer(session)).status).toBe(200);
    expect((await g.get("/pb/calls/next")).status).toBe(401); // token_missing
    expect((await g.bearer(await g.issue())).status).toBe(401); // session_required
    expect((await g.app.request("/l/not.a.token")).status).toBe(401); // token_invalid (landing)
    const token = await g.issue();
    expect((await g.app.request(`/l/${token}`)).status).toBe(200); // landing page shown
    const text = await g.text();
    const series = (decision: string, code: string) =>
      `phaselock_gateway_decisions_total{decision="${decision}",code="${code}"}`;
    expect(value(text, series("allow", "ok"))).toBe(3);
    expect(value(text, series("deny", "token_missing"))).toBe(1);
    expect(value(text, series("deny", "session_required"))).toBe(1);
    expect(value(text, series("deny", "token_invalid"))).toBe(1);
    // Every code has its series from the start (pre-bound), so rates work before the first denial.
    for (const code of REFUSAL_CODES) expect(value(text, series("deny", code)), code).toBeDefined();
  });

  it("reports feed staleness, audit queue, verify cache and upstream pool at scrape time", async () => {
    const g = await metered();
    const text = await g.text();
    expect(value(text, "phaselock_gateway_feed_staleness_seconds")).toBe(1.5);
    expect(value(text, "phaselock_gateway_audit_queue_depth")).toBe(7);
    expect(value(text, "phaselock_gateway_verify_cache_hits_total")).toBe(3);
    expect(value(text, "phaselock_gateway_verify_cache_misses_total")).toBe(1);
    expect(value(text, "phaselock_gateway_verify_cache_hit_ratio")).toBe(0.75);
    expect(value(text, 'phaselock_gateway_upstream_pool_connections{state="running"}')).toBe(1);
    g.deps.metrics?.revocationLag(0.2);
    g.deps.metrics?.auditCommit(0.003, 12);
    const after = await g.text();
    expect(value(after, "phaselock_gateway_revocation_lag_seconds_count")).toBe(1);
    expect(value(after, "phaselock_gateway_audit_events_committed_total")).toBe(12);
  });

  it("is neither proxied nor audited, and requires METRICS_TOKEN as a bearer when set", async () => {
    const g = await metered();
    const before = g.events().length;
    const open = await g.scrape();
    expect(open.status).toBe(200);
    expect(open.headers.get("content-type")).toMatch(/^text\/plain/);
    expect(open.headers.get("x-content-type-options")).toBe("nosniff");
    g.deps.config.metricsToken = "metrics-token-for-the-test";
    const refused = await g.scrape();
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { code: string }).code).toBe("unauthorized");
    expect((await g.scrape({ authorization: "Bearer not-the-metrics-token" })).status).toBe(401);
    expect((await g.scrape({ authorization: "Bearer metrics-token-for-the-test" })).status).toBe(200);
    expect(g.phonebank.seen.filter((r) => r.path.includes("metrics"))).toEqual([]);
    expect(g.events().length).toBe(before);
  });
});

describe("the node fast path counts and logs too", () => {
  let server: Server | undefined;
  afterEach(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

  it("times /pb/* requests by route kind and writes one line each, never the token's path", async () => {
    const g = await metered();
    const lines: string[] = [];
    g.deps.logger = createLogger({
      service: "gateway",
      destination: lineSink(lines),
    });
    server = createServer(createNodeHandler(g.deps, g.app));
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const session = await g.session();
    const token = await g.issue();
    const ok = await fetch(`${base}/pb/calls/next?page=2`, {
      headers: { authorization: `Bearer ${session}`, "x-request-id": "req_fastpath_1" },
    });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("x-content-type-options")).toBe("nosniff");
    await ok.text();
    const landing = await fetch(`${base}/l/${token}`);
    expect(landing.status).toBe(200);
    await landing.text();
    // Lines are written once the answer is done: wait for both.
    await expect.poll(() => lines.length).toBe(2);
    const text = await g.text();
    expect(
      value(text, 'phaselock_gateway_request_duration_seconds_count{route="proxy",status_class="2xx"}'),
    ).toBe(1);
    expect(
      value(text, 'phaselock_gateway_request_duration_seconds_count{route="landing",status_class="2xx"}'),
    ).toBe(1);
    const [pb, l] = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(pb).toMatchObject({
      level: "info",
      msg: "request",
      method: "GET",
      route: "proxy",
      path: "/pb/calls/next",
      status: 200,
      requestId: "req_fastpath_1",
    });
    expect(typeof pb?.ms).toBe("number");
    expect(l).toMatchObject({ path: "/l/:token", status: 200 });
    expect(typeof l?.requestId).toBe("string");
    const all = lines.join("\n");
    expect(all).not.toContain(token);
    expect(all).not.toContain(session);
    expect(all).not.toContain("page=2");
  });
});

describe("security headers on every gateway page", () => {
  it.each([
    ["landing page", "valid"],
    ["refusal page", "invalid"],
    ["signed-out page", "signed-out"],
  ])("%s: CSP with frame-ancestors 'none', nosniff, Referrer-Policy", async (_name, which) => {
    const g = await gatewayFixture();
    const path =
      which === "valid" ? `/l/${await g.issue()}` : which === "invalid" ? "/l/not.a.token" : "/signed-out";
    const res = await g.get(path, { accept: "text/html" });
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(res.headers.get("content-security-policy")).toMatch(/frame-ancestors 'none'/);
    expect(res.headers.get("content-security-policy")).toMatch(/default-src 'none'/);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    expect(res.headers.get("strict-transport-security")).toBeNull();
  });

  it("sends HSTS when behind HTTPS, and nosniff on JSON answers", async () => {
    const g = await gatewayFixture();
    const res = await g.get("/l/not.a.token", { accept: "text/html", "x-forwarded-proto": "https" });
    expect(res.headers.get("strict-transport-security")).toMatch(/^max-age=\d+/);
    const json = await g.get("/pb/calls/next");
    expect(json.headers.get("content-type")).toMatch(/json/);
    expect(json.headers.get("x-content-type-options")).toBe("nosniff");
    g.deps.config.secureCookies = true;
    const session = await g.session();
    expect((await g.bearer(session)).headers.get("strict-transport-security")).toMatch(/^max-age=/);
  });
});
