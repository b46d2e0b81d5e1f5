import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { getRequestListener } from "@hono/node-server";
import { createTestDatabase, type TestDatabase } from "@phaselock/db/testing";
import { describeIntegration, lineSink } from "@phaselock/testkit";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { parseStackEnv } from "./env.ts";
import { type BuiltStack, buildStack } from "./stack.ts";

const METRICS_TOKEN = "metrics-token-for-the-log-test-0123";

type Listener = (req: IncomingMessage, res: ServerResponse) => void;
async function listen(listener: { current: Listener }): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => listener.current(req, res));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

describeIntegration("a full run's logs: one JSON line per request, no credential", ["postgres"], () => {
  let db: TestDatabase;
  let dataDir: string;
  let stack: BuiltStack;
  const servers: Server[] = [];
  const urls = { gateway: "", tokenService: "", phonebank: "" };
  /** every line pino wrote, and everything written to the console */
  const lines: string[] = [];
  const consoleOut: string[] = [];
  /** every credential the run saw */
  const secrets = new Map<string, string>();

  beforeAll(async () => {
    for (const method of ["log", "info", "warn", "error", "debug"] as const) {
      vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
        consoleOut.push(args.map(String).join(" "));
      });
    }
    db = await createTestDatabase({ migrate: false });
    dataDir = mkdtempSync(join(tmpdir(), "phaselock-logs-"));
    // The phone bank listens first: the gateway's upstream is its port.
    const pb = { current: ((_q, s) => s.end()) as Listener };
    const gw = { current: pb.current };
    const ts = { current: pb.current };
    for (const [name, ref] of [
      ["phonebank", pb],
      ["gateway", gw],
      ["tokenService", ts],
    ] as const) {
      const { server, url } = await listen(ref);
      servers.push(server);
      urls[name] = url;
    }
    const config = parseStackEnv({
      DATABASE_URL: db.url,
      DATA_DIR: dataDir,
      UPSTREAM_URL: urls.phonebank,
      PUBLIC_GATEWAY_URL: urls.gateway,
      TOKEN_SERVICE_URL: urls.tokenService,
      METRICS_TOKEN,
      LOG_LEVEL: "info",
    });
    await db.handle.close();
    stack = await buildStack(config, {
      logDestination: lineSink(lines),
    });
    pb.current = getRequestListener(stack.phonebank.fetch);
    gw.current = stack.gateway.handler;
    ts.current = getRequestListener(stack.tokenService.app.fetch);
    secrets.set("admin token", stack.adminToken);
    secrets.set("metrics token", METRICS_TOKEN);
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    await stack?.stop();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
    vi.restoreAllMocks();
  });

  const admin = (path: string, init: { method?: string; body?: unknown; token?: string } = {}) =>
    fetch(`${urls.tokenService}${path}`, {
      method: init.method ?? "GET",
      headers: {
        authorization: `Bearer ${init.token ?? stack.adminToken}`,
        "content-type": "application/json",
      },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });

  it("runs a full flow, then finds none of its tokens, codes, sessions or keys in any log", async () => {
    // An API key, and a link issued with it (the short link URL holds the code).
    const created = await admin("/v1/api-keys", {
      method: "POST",
      body: { role: "coordinator", campaignId: "starmer-2020", label: "log test" },
    });
    expect(created.status).toBe(201);
    const { key } = (await created.json()) as { key: string };
    secrets.set("API key", key);
    const issued = await admin("/v1/links", {
      method: "POST",
      token: key,
      body: {
        campaignId: "starmer-2020",
        phase: "ballot",
        volunteer: { ref: "log-volunteer-1" },
        scopes: ["calls:read", "calls:write", "members:read"],
      },
    });
    expect(issued.status).toBe(201);
    const link = (await issued.json()) as { url: string; token: string };
    const code = new URL(link.url).pathname.split("/").at(-1)!;
    secrets.set("link token", link.token);
    secrets.set("short code", code);
    secrets.set("demo ballot token", new URL(stack.demo!.ballot.url).pathname.split("/").at(-1)!);

    // The volunteer: landing page (device cookie), redemption by short code, the calling page.
    const landing = await fetch(`${urls.gateway}/l/${code}?utm=x`, { headers: { accept: "text/html" } });
    expect(landing.status).toBe(200);
    expect(landing.headers.get("content-security-policy")).toMatch(/frame-ancestors 'none'/);
    expect(landing.headers.get("x-content-type-options")).toBe("nosniff");
    await landing.text();
    const device = landing.headers.getSetCookie().find((c) => c.startsWith("pl_device="))!;
    const deviceCookie = device.slice(0, device.indexOf(";"));
    secrets.set("device cookie", deviceCookie.slice("pl_device=".length));
    const redeemed = await fetch(`${urls.gateway}/l/${code}`, {
      method: "POST",
      headers: { accept: "application/json", cookie: deviceCookie, origin: urls.gateway },
    });
    expect(redeemed.status).toBe(201);
    const { session } = (await redeemed.json()) as { session: string };
    secrets.set("session", session);
    const next = await fetch(`${urls.gateway}/pb/calls/next`, {
      headers: { authorization: `Bearer ${session}` },
    });
    expect(next.status).toBe(200);
    await next.text();
    const page = await fetch(`${urls.gateway}/pb/`, {
      headers: { cookie: `pl_session=${session}; ${deviceCookie}`, accept: "text/html" },
    });
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toMatch(/frame-ancestors 'none'/);
    await page.text();
    // The link token itself on /pb is refused, and a redemption by token opens a second session.
    const refused = await fetch(`${urls.gateway}/pb/calls/next`, {
      headers: { authorization: `Bearer ${link.token}` },
    });
    expect(refused.status).toBe(401);
    await refused.text();
    const byToken = await fetch(`${urls.gateway}/l/${link.token}`, {
      method: "POST",
      headers: { accept: "application/json", cookie: deviceCookie, origin: urls.gateway },
    });
    expect(byToken.status).toBe(201);
    secrets.set("second session", ((await byToken.json()) as { session: string }).session);
    // The code and the token where no route takes them, and in a query, on every service.
    for (const base of Object.values(urls)) {
      for (const target of [
        `/x/${code}`,
        `/${link.token}`,
        `/l/${code}/x`,
        `/healthz?token=${code}&t=${link.token}`,
      ]) {
        const res = await fetch(`${base}${target}`, { headers: { referer: link.url } });
        await res.text();
      }
    }
    // A wrong admin credential, and a key rotation.
    const wrong = `wrong-admin-token-${"z".repeat(32)}`;
    secrets.set("wrong admin token", wrong);
    expect((await admin("/v1/links", { token: wrong })).status).toBe(401);
    expect((await admin("/v1/keys/rotate", { method: "POST" })).status).toBe(201);

    // Metrics on every service, behind METRICS_TOKEN.
    for (const base of Object.values(urls)) {
      expect((await fetch(`${base}/metrics`)).status).toBe(401);
      const ok = await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } });
      expect(ok.status, base).toBe(200);
      await ok.text();
    }
    const gatewayMetrics = await (
      await fetch(`${urls.gateway}/metrics`, { headers: { authorization: `Bearer ${METRICS_TOKEN}` } })
    ).text();
    expect(gatewayMetrics).toMatch(
      /phaselock_gateway_decisions_total\{[^}]*decision="allow"[^}]*code="ok"[^}]*\} [1-9]/,
    );
    expect(gatewayMetrics).toMatch(
      /phaselock_gateway_decisions_total\{[^}]*code="session_required"[^}]*\} 1/,
    );
    expect(gatewayMetrics).toMatch(/phaselock_gateway_audit_events_committed_total [1-9]/);

    // Lines are written as each answer finishes: wait for the last (the scrape above), then stop
    // the stack, which writes what is buffered.
    await expect
      .poll(() => lines.filter((l) => l.includes('"path":"/metrics"') && l.includes('"gateway"')).length)
      .toBeGreaterThanOrEqual(3);
    const requests = lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === "request");
    for (const service of ["gateway", "token-service", "phonebank"]) {
      expect(
        requests.some((r) => r.service === service),
        service,
      ).toBe(true);
    }
    for (const r of requests) {
      expect(r).toMatchObject({ level: "info" });
      expect(typeof r.requestId, JSON.stringify(r)).toBe("string");
      expect(typeof r.status).toBe("number");
      expect(typeof r.ms).toBe("number");
      expect(String(r.path)).not.toContain("?");
    }
    expect(requests.filter((r) => r.path === "/l/:token").length).toBeGreaterThanOrEqual(3);

    const everything = [...lines, ...consoleOut].join("\n");
    expect(secrets.size).toBeGreaterThanOrEqual(10);
    for (const [what, value] of secrets)
      expect(everything.includes(value), `the ${what} appears in the logs`).toBe(false);
  });
});
