/**
 * The proxy's behaviour, one table of cases run against both transports: the Hono app
 * (`app.request`, in-process upstream) and the node:http handler on a real socket with the fake
 * phone bank behind a real HTTP upstream. The two share one proxy core; this keeps them honest.
 */
import { createServer, type IncomingHttpHeaders, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createAdaptorServer } from "@hono/node-server";
import { Hono } from "hono";
import { afterEach, describe, expect, it } from "vitest";
import { answerHeaders } from "./answer-headers.ts";
import { createApp } from "./app.ts";
import type { GatewayConfig } from "./deps.ts";
import { createNodeHandler } from "./node-handler.ts";
import { ipHash } from "./request-context.ts";
import { errorCode, fakePhonebank, gatewayFixture, T0, UPSTREAM_SECRET } from "./test-support.ts";
import { createHttpUpstream, type HttpUpstream, type Upstream, UpstreamError } from "./upstream.ts";

type Fixture = Awaited<ReturnType<typeof gatewayFixture>>;
interface Init {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
}
interface Harness {
  g: Fixture;
  send(path: string, init?: Init): Promise<Response>;
}
/**
 * `upstream`: a fake one; `unreachable`: a real HTTP upstream at a port nobody listens on;
 * `connections`/`timeoutMs`: the real upstream's pool; `config`: over the fixture's.
 */
type UpstreamChoice = {
  upstream?: Upstream;
  unreachable?: boolean;
  connections?: number;
  timeoutMs?: number;
  config?: Partial<GatewayConfig>;
};

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function listen(server: Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)),
  );
}
function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
async function closedPort(): Promise<number> {
  const s = createServer();
  const port = await listen(s);
  await closeServer(s);
  return port;
}

function toHeaders(raw: IncomingHttpHeaders): Headers {
  const out = new Headers();
  for (const [name, value] of Object.entries(raw)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) out.append(name, v);
  }
  return out;
}

/** A plain node:http client (fetch would refuse or rewrite some of the headers under test). */
function nodeRequest(port: number, path: string, init: Init & { chunks?: string[] } = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: "127.0.0.1", port, path, method: init.method ?? "GET", headers: init.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const status = res.statusCode ?? 0;
          const nullBody = status === 204 || status === 304 || init.method === "HEAD";
          resolve(
            new Response(nullBody ? null : Buffer.concat(chunks), {
              status,
              headers: toHeaders(res.headers),
            }),
          );
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    for (const c of init.chunks ?? []) req.write(c);
    req.end(init.body);
  });
}

async function upstreamFor(choice: UpstreamChoice, baseUrl?: string): Promise<Upstream | undefined> {
  if (choice.upstream) return choice.upstream;
  if (!choice.unreachable && !baseUrl) return undefined;
  const url = choice.unreachable ? `http://127.0.0.1:${await closedPort()}` : baseUrl!;
  const upstream: HttpUpstream = createHttpUpstream({
    baseUrl: url,
    timeoutMs: choice.timeoutMs ?? 5_000,
    maxBodyBytes: 1024,
    ...(choice.connections ? { connections: choice.connections } : {}),
  });
  cleanups.push(() => upstream.close());
  return upstream;
}

const hono = async (choice: UpstreamChoice = {}): Promise<Harness> => {
  const g = await gatewayFixture({ upstream: await upstreamFor(choice) });
  Object.assign(g.deps.config, choice.config);
  const app = choice.config ? createApp(g.deps) : g.app;
  return { g, send: async (path, init = {}) => app.request(path, init) };
};

const node = async (choice: UpstreamChoice = {}): Promise<Harness & { port: number }> => {
  const phonebank = fakePhonebank();
  const pbServer = createAdaptorServer({ fetch: phonebank.app.fetch }) as Server;
  const pbPort = await listen(pbServer);
  cleanups.push(() => closeServer(pbServer));
  const upstream = await upstreamFor(choice, `http://127.0.0.1:${pbPort}`);
  const g = await gatewayFixture({ phonebank, ...(upstream ? { upstream } : {}) });
  Object.assign(g.deps.config, choice.config);
  const server = createServer(createNodeHandler(g.deps, g.app));
  const port = await listen(server);
  cleanups.push(() => closeServer(server));
  return { g, port, send: (path, init = {}) => nodeRequest(port, path, init) };
};

const transports = [
  ["hono app.request", hono],
  ["node handler", node],
] as const;

const bearer = (token: string, extra: Record<string, string> = {}) => ({
  authorization: `Bearer ${token}`,
  ...extra,
});

describe.each(transports)("proxy over %s", (_name, make) => {
  it("allowed: strips credentials and hop-by-hop fields, adds X-Phaselock-* and the secret", async () => {
    const { g, send } = await make();
    const token = await g.session({ jti: "lnk_hdr", sub: "vol-7" });
    const res = await send("/pb/calls/next", {
      headers: {
        authorization: `Bearer ${token}`,
        cookie: "other=1; pl_session=x",
        "x-phaselock-campaign": "forged",
        "x-phaselock-gateway-secret": "forged",
        "proxy-authorization": "Basic eA==",
        connection: "x-hop",
        "x-hop": "1",
        "x-request-id": "req-abc.1",
        "x-other": "kept",
      },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-request-id")).toBe("req-abc.1");
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    expect(res.headers.get("cache-control")).toBe("no-store");
    const seen = g.phonebank.seen[0]!;
    expect(seen.path).toBe("/calls/next");
    for (const name of ["authorization", "cookie", "x-hop", "proxy-authorization"]) {
      expect([name, seen.headers.get(name)]).toEqual([name, null]);
    }
    expect(seen.headers.get("x-other")).toBe("kept");
    expect(seen.headers.get("x-request-id")).toBe("req-abc.1");
    expect(seen.headers.get("x-phaselock-campaign")).toBe("starmer-2020");
    expect(seen.headers.get("x-phaselock-volunteer")).toBe("vol-7");
    expect(seen.headers.get("x-phaselock-link")).toBe("lnk_hdr");
    expect(seen.headers.get("x-phaselock-scopes")).toBe("calls:read calls:write members:read");
    expect(seen.headers.get("x-phaselock-gateway-secret")).toBe(UPSTREAM_SECRET);
  });

  it("an unlisted route passes through, without the upstream's Set-Cookie; the session cookie works", async () => {
    const { g, send } = await make();
    const token = await g.session();
    const res = await send("/pb/", { headers: { cookie: `pl_session=${token}` } });
    expect(res.status).toBe(200);
    expect(await res.text()).toContain("calling page");
    expect(res.headers.get("set-cookie")).toBeNull();
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(res.headers.get("x-request-id")).toMatch(/^req/);
  });

  it("a proxied HTML page the upstream sent without a CSP still may not be framed", async () => {
    const { g, send } = await make();
    const token = await g.session();
    const res = await send("/pb/", { headers: { cookie: `pl_session=${token}` } });
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(res.headers.get("content-security-policy")).toMatch(/frame-ancestors 'none'/);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
  });

  it("forwards a request body and the upstream's status", async () => {
    const { g, send } = await make();
    const token = await g.session();
    const res = await send("/pb/calls/c_9/outcome?x=1", {
      method: "POST",
      headers: bearer(token, { "content-type": "application/json" }),
      body: JSON.stringify({ outcome: "answered" }),
    });
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({ ok: true, id: "c_9" });
    expect(g.phonebank.seen.map((r) => [r.method, r.path])).toEqual([["POST", "/calls/c_9/outcome"]]);
  });

  it.each([
    ["token_missing", 401],
    ["token_invalid", 401],
  ] as const)("%s (%i, WWW-Authenticate, no-store, request id)", async (code, status) => {
    const { g, send } = await make();
    const headers = code === "token_invalid" ? bearer("pls_notAsessionAtAll000000") : {};
    const res = await send("/pb/calls/next", { headers });
    expect(res.status).toBe(status);
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer /);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(res.headers.get("x-request-id")).toMatch(/^req/);
    const text = await res.text();
    expect(JSON.parse(text).error.code).toBe(code);
    expect(text).not.toContain("not.a.token");
    expect(g.events().map((e) => [e.decision, e.reason])).toEqual([["deny", code]]);
  });

  it("revoked (403)", async () => {
    const { g, send } = await make();
    const token = await g.session({ jti: "lnk_revoked" });
    g.revocations.add({
      id: "rev_1",
      scope: "link",
      linkId: "lnk_revoked",
      reason: "test",
      actor: "admin",
      effectiveAt: T0,
    });
    const res = await send("/pb/calls/next", { headers: bearer(token) });
    expect([res.status, await errorCode(res)]).toEqual([403, "revoked"]);
    expect(g.phonebank.seen).toHaveLength(0);
  });

  it("scope_denied (403): missing scope, unmapped route, members:export", async () => {
    const { g, send } = await make();
    const readOnly = await g.session({ scp: ["calls:read"] });
    for (const [method, path] of [
      ["GET", "/pb/members/m_000001"],
      ["GET", "/pb/admin"],
      ["DELETE", "/pb/calls/next"],
      ["GET", "/pb/members/export"],
    ] as const) {
      const res = await send(path, { method, headers: bearer(readOnly) });
      expect([path, res.status, await errorCode(res)]).toEqual([path, 403, "scope_denied"]);
    }
    expect(g.phonebank.seen).toHaveLength(0);
  });

  it("rate_limited (429 with Retry-After)", async () => {
    const { g, send } = await make();
    g.snapshot.campaigns.get("starmer-2020")!.limits = { requestsPerMinute: 1 };
    const token = await g.session();
    expect((await send("/pb/", { headers: bearer(token) })).status).toBe(200);
    const res = await send("/pb/", { headers: bearer(token) });
    expect([res.status, await errorCode(res)]).toEqual([429, "rate_limited"]);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  it("quota_exceeded (429, after the answer, which is then withheld)", async () => {
    const { g, send } = await make();
    g.snapshot.campaigns.get("starmer-2020")!.limits = { recordsPerHour: 1 };
    const token = await g.session();
    expect((await send("/pb/members/m_000001", { headers: bearer(token) })).status).toBe(200);
    const res = await send("/pb/members/m_000002", { headers: bearer(token) });
    const text = await res.text();
    expect([res.status, JSON.parse(text).error.code]).toEqual([429, "quota_exceeded"]);
    expect(res.headers.get("retry-after")).not.toBeNull();
    expect(text).not.toContain("07700");
    expect(g.phonebank.seen).toHaveLength(2);
  });

  it("unavailable (503 with Retry-After): stale state, unhealthy audit, a store that fails", async () => {
    const { g, send } = await make();
    const token = await g.session();
    g.setFresh(false);
    let res = await send("/pb/calls/next", { headers: bearer(token) });
    expect([res.status, await errorCode(res)]).toEqual([503, "unavailable"]);
    expect(res.headers.get("retry-after")).toBe("5");
    g.setFresh(true);
    g.setAuditHealthy(false);
    res = await send("/pb/calls/next", { headers: bearer(token) });
    expect([res.status, await errorCode(res)]).toEqual([503, "unavailable"]);
    g.setAuditHealthy(true);
    g.deps.limits.request = async () => {
      throw new Error("store down");
    };
    res = await send("/pb/calls/next", { headers: bearer(token) });
    expect([res.status, await errorCode(res)]).toEqual([503, "unavailable"]);
    expect(g.phonebank.seen).toHaveLength(0);
  });

  it("fails closed (503) on an error thrown anywhere in the checks", async () => {
    const { g, send } = await make();
    const token = await g.session();
    g.deps.routes = () => {
      throw new Error("bug");
    };
    const res = await send("/pb/calls/next", { headers: bearer(token, { accept: "text/html" }) });
    expect(res.status).toBe(503);
    expect(res.headers.get("content-type")).toContain("text/html");
    expect(await res.text()).toContain("unavailable");
  });

  it.each([
    ["upstream_unreachable", 502],
    ["upstream_timeout", 504],
  ] as const)("upstream_error: %s answers %i", async (code, status) => {
    const fail = async (): Promise<never> => {
      throw new UpstreamError(code, "x");
    };
    for (const upstream of [{ forward: fail }, { forward: fail, request: fail }]) {
      const { g, send } = await make({ upstream });
      const res = await send("/pb/calls/next", { headers: bearer(await g.session()) });
      expect([res.status, await errorCode(res)]).toEqual([status, "upstream_error"]);
      expect(g.events().at(-1)).toMatchObject({ decision: "deny", reason: "upstream_error" });
    }
  });

  it("upstream_error (502): an upstream that answers 5xx failed, whatever its body says", async () => {
    const failing = async (): Promise<Response> =>
      new Response('{"error":"db down","member":{"email":"a@example.org"}}', {
        status: 500,
        headers: { "content-type": "application/json" },
      });
    const { g, send } = await make({ upstream: { forward: failing } });
    const session = await g.session();
    for (const path of ["/pb/calls/next", "/pb/members/m_000001", "/pb/"]) {
      const res = await send(path, { headers: bearer(session) });
      expect([path, res.status, await errorCode(res)]).toEqual([path, 502, "upstream_error"]);
      expect(g.events().at(-1)).toMatchObject({
        decision: "deny",
        reason: "upstream_error",
        data: { forwarded: true, status: 500 },
      });
    }
    // The upstream may have acted on it (a call outcome written, then a 500): its event is
    // durable, and an audit that cannot take it fails the answer closed.
    g.audit.recordDurable = () => Promise.reject(new Error("audit down"));
    const res = await send("/pb/calls/c_1/outcome", {
      method: "POST",
      body: '{"outcome":"answered"}',
      headers: bearer(session, { "content-type": "application/json" }),
    });
    expect([res.status, await errorCode(res)]).toEqual([503, "unavailable"]);
  });

  it("upstream_error (502): a real HTTP upstream that refuses connections", async () => {
    const { g, send } = await make({ unreachable: true });
    const res = await send("/pb/calls/next", { headers: bearer(await g.session()) });
    expect([res.status, await errorCode(res)]).toEqual([502, "upstream_error"]);
  });

  it("payload_too_large (413): a declared body over the limit never reaches the upstream", async () => {
    const { g, send } = await make();
    const res = await send("/pb/calls/c_1/outcome", {
      method: "POST",
      body: "x".repeat(4096),
      headers: bearer(await g.session(), { "content-type": "application/json", "content-length": "4096" }),
    });
    expect([res.status, await errorCode(res)]).toEqual([413, "payload_too_large"]);
    expect(g.phonebank.seen).toHaveLength(0);
  });

  it("minimises member data: fields outside the allow-list never reach the volunteer", async () => {
    const { g, send } = await make();
    const token = await g.session();
    for (const path of ["/pb/calls/next", "/pb/members/m_000042"]) {
      const res = await send(path, { headers: bearer(token) });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("application/json; charset=utf-8");
      const text = await res.text();
      expect(res.headers.get("content-length") ?? String(text.length)).toBe(String(text.length));
      expect(text).toContain("07700 900123");
      for (const leak of ["alex@example.invalid", "1970-01-01", "Example Street"])
        expect(text).not.toContain(leak);
    }
    expect(g.events().map((e) => e.decision)).toEqual(["allow", "allow"]);
  });

  it("encoded traversal toward /members/export never reaches the upstream", async () => {
    const { g, send } = await make();
    const token = await g.session();
    for (const path of [
      "/pb/members/..%2fexport",
      "/pb/calls/%2e%2e/members/export",
      "/pb/members/%252e%252e/export",
      "/pb//members/export",
      "/pb/members/./export",
      "/pb/members/%65xport",
    ]) {
      const res = await send(path, { headers: bearer(token) });
      expect([path, res.status]).toEqual([path, 403]);
    }
    expect(g.phonebank.seen.filter((r) => r.path.includes("export"))).toHaveLength(0);
  });

  it("a browser gets an HTML refusal page", async () => {
    const { send } = await make();
    const res = await send("/pb/calls/next", { headers: { accept: "text/html,application/xhtml+xml" } });
    expect(res.status).toBe(401);
    expect(res.headers.get("content-type")).toContain("text/html");
    expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(await res.text()).toContain("token_missing");
  });

  it("every answer carries the headers the Hono app's middleware adds, proxied or not", async () => {
    const { g, send } = await make();
    // What the gateway's Hono app adds to a plain JSON answer, over a bare Hono app's: its
    // middleware. In production /pb/* never passes through it, so the proxy core must add the same.
    const bare = new Hono().get("/healthz", (c) => c.json({ ok: true }));
    const plain = new Set((await bare.request("/healthz")).headers.keys());
    const added = [...(await g.app.request("/healthz")).headers.keys()].filter((n) => !plain.has(n));
    const shared = answerHeaders("x").map(([name]) => name);
    expect(added.sort()).toEqual([...shared].sort());

    const token = await g.session();
    const answers = {
      minimised: await send("/pb/calls/next", { headers: bearer(token) }),
      passthrough: await send("/pb/", { headers: bearer(token) }),
      refused: await send("/pb/calls/next"),
      unmapped: await send("/pb/nope", { headers: bearer(token) }),
      landing: await send(`/l/${token}`, { headers: { accept: "text/html" } }),
      health: await send("/healthz"),
    };
    for (const [what, res] of Object.entries(answers)) {
      for (const name of added) expect([what, name, res.headers.has(name)]).toEqual([what, name, true]);
    }
  });

  it("other routes are Hono's: /pb redirect, landing page, health", async () => {
    const { g, send } = await make();
    const token = await g.issue();
    const redirect = await send("/pb");
    expect([redirect.status, redirect.headers.get("location")]).toEqual([308, "/pb/"]);
    const landing = await send(`/l/${token}`, { headers: { accept: "text/html" } });
    expect(landing.status).toBe(200);
    expect(await landing.text()).toContain("Start calling");
    const health = await send("/healthz");
    expect(await health.json()).toEqual({ ok: true });
    expect(health.headers.get("x-request-id")).toMatch(/^req/);
    expect((await send("/nope")).status).toBe(404);
  });
});

describe("node handler only", () => {
  it("a chunked body over the limit is refused (413) and the connection is not reused", async () => {
    const { g, port } = await node();
    const res = await nodeRequest(port, "/pb/calls/c_1/outcome", {
      method: "POST",
      headers: bearer(await g.session(), { "content-type": "application/json" }),
      chunks: ["x".repeat(800), "x".repeat(800)],
    });
    expect([res.status, await errorCode(res)]).toEqual([413, "payload_too_large"]);
    expect(res.headers.get("connection")).toBe("close");
  });

  it("HEAD is relayed without a body", async () => {
    const { g, port } = await node();
    const res = await nodeRequest(port, "/pb/", { method: "HEAD", headers: bearer(await g.session()) });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
  });
});

describe("node handler, a header node cannot send", () => {
  it("answers 503 unavailable instead of crashing", async () => {
    const { g, port } = await node({
      upstream: {
        forward: async () => new Response("x"),
        request: async () => ({ status: 200, headers: ["x-bad", "a\nb"], body: null }),
      },
    });
    const res = await nodeRequest(port, "/pb/", { headers: bearer(await g.session()) });
    expect([res.status, await errorCode(res)]).toEqual([503, "unavailable"]);
  });
});

describe.each(transports)("context and client headers over %s", (name, make) => {
  it("a context value outside plain ASCII is percent-encoded (RFC 3986 unreserved kept)", async () => {
    const { g, send } = await make();
    const token = await g.session({ jti: "lnk_enc", sub: "Łukasz-1 ä" });
    const res = await send("/pb/calls/next", { headers: bearer(token) });
    expect(res.status).toBe(200);
    const seen = g.phonebank.seen[0]!.headers;
    expect(seen.get("x-phaselock-volunteer")).toBe("%C5%81ukasz-1%20%C3%A4");
    expect(seen.get("x-phaselock-link")).toBe("lnk_enc");
  });

  it("drops client headers that normalise to x-phaselock-* or say who the client is", async () => {
    const { g, send } = await make();
    const token = await g.session({ jti: "lnk_real" });
    const res = await send("/pb/calls/next", {
      headers: bearer(token, {
        X_Phaselock_Link: "lnk_forged",
        "x-PHASELOCK-scopes": "members:export",
        "X-Phaselock_Campaign": "forged",
        x_request_id: "forged",
        "X-Forwarded-For": "198.51.100.66",
        X_Forwarded_For: "198.51.100.67",
        Forwarded: "for=198.51.100.66",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example",
        "X-Real-IP": "198.51.100.66",
      }),
    });
    expect(res.status).toBe(200);
    const seen = g.phonebank.seen[0]!.headers;
    const names = [...seen.keys()];
    expect(names.filter((n) => n.replaceAll("_", "-").startsWith("x-phaselock-")).sort()).toEqual([
      "x-phaselock-campaign",
      "x-phaselock-gateway-secret",
      "x-phaselock-link",
      "x-phaselock-scopes",
      "x-phaselock-volunteer",
    ]);
    expect(seen.get("x-phaselock-link")).toBe("lnk_real");
    expect(seen.get("x-phaselock-scopes")).toBe("calls:read calls:write members:read");
    for (const h of ["forwarded", "x-forwarded-proto", "x-forwarded-host", "x-real-ip", "x_forwarded_for"]) {
      expect([h, seen.get(h)]).toEqual([h, null]);
    }
    expect(names.some((n) => n.replaceAll("_", "-") === "x-request-id" && seen.get(n) === "forged")).toBe(
      false,
    );
    // The gateway's own, from the socket's peer (app.request has none).
    expect(seen.get("x-forwarded-for")).toBe(name === "node handler" ? "127.0.0.1" : null);
  });

  it("drops headers that would override the method or target the gateway checked", async () => {
    // A calls:read link's GET, told to be a DELETE or the member export by an upstream framework
    // that honours these (Express method-override, Symfony, Laravel, ASP.NET Core, IIS).
    const { g, send } = await make();
    const overrides = {
      "X-HTTP-Method-Override": "DELETE",
      "X-HTTP-Method": "DELETE",
      "X-Method-Override": "DELETE",
      X_Http_Method_Override: "DELETE",
      "X-Original-URL": "/members/export",
      "X-Rewrite-URL": "/members/export",
      "X-Original-Method": "DELETE",
    };
    const res = await send("/pb/calls/next", { headers: bearer(await g.session(), overrides) });
    expect(res.status).toBe(200);
    const seen = g.phonebank.seen[0]!.headers;
    for (const h of Object.keys(overrides)) expect([h, seen.get(h)]).toEqual([h, null]);
    expect([...seen.keys()].filter((n) => /method|original|rewrite/i.test(n))).toEqual([]);
  });
});

describe("node handler: X-Forwarded-For from trusted proxies only", () => {
  it("an untrusted peer's chain is replaced by its address; the audit hashes the peer", async () => {
    const { g, port } = await node();
    const token = await g.session();
    const res = await nodeRequest(port, "/pb/calls/next", {
      headers: bearer(token, { "x-forwarded-for": "203.0.113.9" }),
    });
    expect(res.status).toBe(200);
    expect(g.phonebank.seen[0]!.headers.get("x-forwarded-for")).toBe("127.0.0.1");
    expect(g.events().at(-1)!.data).toMatchObject({ ipHash: ipHash(g.deps.config, "127.0.0.1") });
  });

  it("a trusted peer's chain is appended to; the client is the rightmost untrusted address", async () => {
    const { g, port } = await node({ config: { trustedProxies: ["127.0.0.0/8", "10.0.0.2"] } });
    const token = await g.session();
    const res = await nodeRequest(port, "/pb/calls/next", {
      headers: bearer(token, { "x-forwarded-for": "192.0.2.1, 203.0.113.9, 10.0.0.2" }),
    });
    expect(res.status).toBe(200);
    expect(g.phonebank.seen[0]!.headers.get("x-forwarded-for")).toBe(
      "192.0.2.1, 203.0.113.9, 10.0.0.2, 127.0.0.1",
    );
    expect(g.events().at(-1)!.data).toMatchObject({ ipHash: ipHash(g.deps.config, "203.0.113.9") });
  });
});

describe.each(transports)("HEAD over %s: checked, limited and counted like GET", (_name, make) => {
  it("needs the GET route's scope", async () => {
    const { g, send } = await make();
    const readOnly = await g.session({ scp: ["calls:read"] });
    for (const path of ["/pb/members/m_000001", "/pb/members/export", "/pb/nope"]) {
      const res = await send(path, { method: "HEAD", headers: bearer(readOnly) });
      expect([path, res.status, res.headers.get("x-request-id")?.slice(0, 3)]).toEqual([path, 403, "req"]);
    }
    expect(g.phonebank.seen).toHaveLength(0);
    const ok = await send("/pb/calls/next", { method: "HEAD", headers: bearer(readOnly) });
    expect(ok.status).toBe(200);
  });

  it("is rate limited", async () => {
    const { g, send } = await make();
    g.snapshot.campaigns.get("starmer-2020")!.limits = { requestsPerMinute: 1 };
    const token = await g.session();
    expect((await send("/pb/", { method: "HEAD", headers: bearer(token) })).status).toBe(200);
    const res = await send("/pb/", { method: "HEAD", headers: bearer(token) });
    expect(res.status).toBe(429);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
  });

  it("a HEAD of /members/:id counts against the record quota, and is refused once it is spent", async () => {
    const { g, send } = await make();
    g.snapshot.campaigns.get("starmer-2020")!.limits = { recordsPerHour: 1 };
    const token = await g.session();
    const head = await send("/pb/members/m_000001", { method: "HEAD", headers: bearer(token) });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe("");
    expect(head.headers.get("content-type")).toBe("application/json; charset=utf-8");
    // The same record again is free, as for GET.
    expect((await send("/pb/members/m_000001", { headers: bearer(token) })).status).toBe(200);
    const other = await send("/pb/members/m_000002", { headers: bearer(token) });
    expect([other.status, await errorCode(other)]).toEqual([429, "quota_exceeded"]);
    const headOther = await send("/pb/members/m_000003", { method: "HEAD", headers: bearer(token) });
    expect(headOther.status).toBe(429);
    expect(g.events().map((e) => [e.decision, e.reason])).toEqual([
      ["allow", null],
      ["allow", null],
      ["deny", "quota_exceeded"],
      ["deny", "quota_exceeded"],
    ]);
  });
});

describe.each(transports)("concurrent upstream requests per link over %s", (_name, make) => {
  it("beyond the limit: 429 rate_limited with Retry-After: 1; other links and later requests served", async () => {
    const waiting: Array<() => void> = [];
    const upstream: Upstream = {
      forward: () =>
        new Promise<Response>((resolve) => {
          waiting.push(() =>
            resolve(new Response("<p>page</p>", { headers: { "content-type": "text/html" } })),
          );
        }),
    };
    const { g, send } = await make({ upstream, config: { maxConcurrentPerLink: 2 } });
    const token = await g.session();
    const held = [send("/pb/", { headers: bearer(token) }), send("/pb/", { headers: bearer(token) })];
    await expect.poll(() => waiting.length).toBe(2);
    const refused = await send("/pb/", { headers: bearer(token) });
    expect([refused.status, await errorCode(refused)]).toEqual([429, "rate_limited"]);
    expect(refused.headers.get("retry-after")).toBe("1");
    const other = send("/pb/", { headers: bearer(await g.session()) });
    await expect.poll(() => waiting.length).toBe(3);
    for (const release of waiting.splice(0)) release();
    expect((await Promise.all([...held, other])).map((r) => r.status)).toEqual([200, 200, 200]);
    const later = send("/pb/", { headers: bearer(token) });
    await expect.poll(() => waiting.length).toBe(1);
    waiting.pop()!();
    expect((await later).status).toBe(200);
  });
});

/**
 * A POST to the gateway whose headers and first byte are sent and whose body never finishes:
 * a client on a slow line. `close()` ends it (the socket), `answer` is the gateway's status.
 */
function slowPost(port: number, path: string, headers: Record<string, string>) {
  const req = request({
    host: "127.0.0.1",
    port,
    path,
    method: "POST",
    headers: { ...headers, "content-type": "application/json", "content-length": "100" },
    agent: false,
  });
  let answered = false;
  const answer = new Promise<number>((resolve) => {
    req.on("response", (res) => {
      answered = true;
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on("error", () => resolve(0));
  });
  req.write("{");
  return { answer, answered: () => answered, close: () => req.destroy() };
}

describe("node handler: slow clients and a wedged upstream client", () => {
  it("64 requests with a ref undici would reject leave the pool serving every link", async () => {
    const { g, port } = await node({
      connections: 4,
      timeoutMs: 2_000,
      config: { maxConcurrentPerLink: 100 },
    });
    g.snapshot.campaigns.get("starmer-2020")!.limits = { requestsPerMinute: 1000 };
    const odd = await g.session({ sub: "Łukasz-1" });
    const answers = await Promise.all(
      Array.from({ length: 64 }, () => nodeRequest(port, "/pb/", { headers: bearer(odd) })),
    );
    expect(new Set(answers.map((r) => r.status))).toEqual(new Set([200]));
    const plain = await g.session();
    const after = await Promise.all(
      Array.from({ length: 8 }, () => nodeRequest(port, "/pb/calls/next", { headers: bearer(plain) })),
    );
    expect(after.map((r) => r.status)).toEqual(Array(8).fill(200));
  });

  it("64 slow bodies hold no upstream connection: ordinary GETs are answered meanwhile", async () => {
    // Four upstream connections, and a deadline that fails the GETs if they ever queue behind
    // the slow bodies; the gateway's own body deadline is far off, so the slow requests stay open.
    const { g, port } = await node({ connections: 4, timeoutMs: 2_000, config: { bodyTimeoutMs: 60_000 } });
    g.snapshot.campaigns.get("starmer-2020")!.limits = { requestsPerMinute: 1000 };
    let metered = 0;
    const limits = g.deps.limits.request;
    g.deps.limits.request = (...args) => {
      metered++;
      return limits(...args);
    };
    const slowToken = await g.session();
    const slow = Array.from({ length: 64 }, () => slowPost(port, "/pb/calls/c_1/outcome", bearer(slowToken)));
    cleanups.push(async () => {
      for (const s of slow) s.close();
    });
    // Every slow request has passed the checks: each is now reading its body, or (before the
    // fix) holding or waiting for an upstream connection.
    await expect.poll(() => metered, { timeout: 5_000 }).toBe(64);
    const token = await g.session();
    const gets = await Promise.all(
      Array.from({ length: 8 }, () => nodeRequest(port, "/pb/calls/next", { headers: bearer(token) })),
    );
    expect(gets.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(g.phonebank.seen.filter((r) => r.method === "POST")).toHaveLength(0);
    // The GETs were answered while every slow request was still open.
    expect(slow.filter((s) => s.answered())).toHaveLength(0);
  });

  it("a body that does not arrive within BODY_TIMEOUT_MS: 408 request_timeout, upstream never asked", async () => {
    const { g, port } = await node({ config: { bodyTimeoutMs: 50 } });
    const s = slowPost(port, "/pb/calls/c_1/outcome", bearer(await g.session()));
    cleanups.push(async () => {
      s.close();
    });
    expect(await s.answer).toBe(408);
    expect(g.phonebank.seen).toHaveLength(0);
    expect(g.events().at(-1)).toMatchObject({ decision: "deny", reason: "request_timeout" });
  });

  it("an upstream that resets the connection: 502; one that hangs: 504; the next requests served", async () => {
    const sockets = new Set<import("node:net").Socket>();
    const pb = createServer((req, res) => {
      if (req.url === "/members/m_reset") return req.socket.destroy();
      if (req.url === "/members/m_hang") return;
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ id: "m_1", name: "A" }));
    });
    pb.on("connection", (s) => sockets.add(s));
    const pbPort = await listen(pb);
    cleanups.push(async () => {
      for (const s of sockets) s.destroy();
      await closeServer(pb);
    });
    const upstream = createHttpUpstream({
      baseUrl: `http://127.0.0.1:${pbPort}`,
      timeoutMs: 300,
      maxBodyBytes: 1024,
      connections: 2,
    });
    cleanups.push(() => upstream.close());
    const { g, port } = await node({ upstream });
    g.snapshot.campaigns.get("starmer-2020")!.limits = { requestsPerMinute: 1000 };
    const token = await g.session();
    const failed = await Promise.all(
      ["m_reset", "m_hang", "m_reset", "m_hang"].map((id) =>
        nodeRequest(port, `/pb/members/${id}`, { headers: bearer(token) }),
      ),
    );
    expect(failed.map((r) => r.status)).toEqual([502, 504, 502, 504]);
    expect(await errorCode(failed[1]!)).toBe("upstream_error");
    const ok = await Promise.all(
      Array.from({ length: 4 }, () => nodeRequest(port, "/pb/members/m_1", { headers: bearer(token) })),
    );
    expect(ok.map((r) => r.status)).toEqual([200, 200, 200, 200]);
  });
});

describe.each(transports)("a cookie-borne change from another site over %s", (_name, make) => {
  // SameSite=Strict sends the session cookie from a sibling origin of the same site too: another
  // subdomain's page could post a call outcome as the volunteer. A change must come from our pages.
  const outcome = (headers: Record<string, string>) => ({
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ outcome: "answered" }),
  });

  it("is refused 403 cross_site and audited, never forwarded; our own pages, scripts and bearers pass", async () => {
    const h = await make();
    const { g, send } = h;
    const token = await g.session();
    const cookie = `pl_session=${token}`;
    const own = "port" in h ? `http://127.0.0.1:${h.port}` : "http://localhost";
    const theirs: Record<string, string>[] = [
      { origin: "https://calls.evil.example" },
      { "sec-fetch-site": "cross-site" },
      { origin: "null" },
      { origin: "https://other.example.org", "sec-fetch-site": "same-site" },
      // Behind HTTPS, a page of our host over plain HTTP (anyone on the network can serve one).
      { origin: own, "x-forwarded-proto": "https" },
    ];
    for (const headers of theirs) {
      const res = await send("/pb/calls/c_1/outcome", outcome({ cookie, ...headers }));
      expect([JSON.stringify(headers), res.status, await errorCode(res)]).toEqual([
        JSON.stringify(headers),
        403,
        "cross_site",
      ]);
    }
    expect(g.phonebank.seen).toHaveLength(0);
    expect(g.events().map((e) => [e.decision, e.reason])).toEqual(Array(5).fill(["deny", "cross_site"]));

    const ours: Record<string, string>[] = [
      {},
      { origin: own, "sec-fetch-site": "same-origin" },
      { "sec-fetch-site": "same-origin", origin: "null" },
    ];
    for (const headers of ours) {
      const res = await send("/pb/calls/c_1/outcome", outcome({ cookie, ...headers }));
      expect([JSON.stringify(headers), res.status]).toEqual([JSON.stringify(headers), 201]);
    }
    // A bearer is never sent by a form; a GET from elsewhere changes nothing.
    const scripted = await send(
      "/pb/calls/c_1/outcome",
      outcome({ ...bearer(token), origin: "https://x.example" }),
    );
    expect(scripted.status).toBe(201);
    const read = await send("/pb/calls/next", { headers: { cookie, origin: "https://x.example" } });
    expect(read.status).toBe(200);
  });

  it("spends none of the volunteer's rate limit", async () => {
    const h = await make();
    const { g, send } = h;
    g.snapshot.campaigns.get("starmer-2020")!.limits = { requestsPerMinute: 2 };
    const token = await g.session();
    const cookie = `pl_session=${token}`;
    const refused: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await send(
        "/pb/calls/c_1/outcome",
        outcome({ cookie, origin: "https://calls.evil.example" }),
      );
      refused.push(res.status);
      const read = await send("/pb/calls/next", {
        headers: { cookie, "sec-fetch-site": "same-site", "sec-fetch-mode": "no-cors" },
      });
      refused.push(read.status);
    }
    expect(refused).toEqual(Array(10).fill(403));
    const ours = [
      await send("/pb/calls/c_1/outcome", outcome({ cookie })),
      await send("/pb/calls/next", { headers: { cookie } }),
      await send("/pb/calls/next", { headers: { cookie } }),
    ];
    expect(ours.map((r) => r.status)).toEqual([201, 200, 429]);
  });

  it("a read another site's page makes (an image, a script's fetch) is refused; a navigation and our own reads pass", async () => {
    const { g, send } = await make();
    const token = await g.session();
    const cookie = `pl_session=${token}`;
    const theirs: Record<string, string>[] = [
      { "sec-fetch-site": "same-site", "sec-fetch-mode": "no-cors", "sec-fetch-dest": "image" },
      { "sec-fetch-site": "same-site", "sec-fetch-mode": "cors" },
      { "sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors" },
    ];
    for (const headers of theirs) {
      const res = await send("/pb/calls/next", { headers: { cookie, ...headers } });
      expect([JSON.stringify(headers), res.status, await errorCode(res)]).toEqual([
        JSON.stringify(headers),
        403,
        "cross_site",
      ]);
    }
    expect(g.phonebank.seen).toHaveLength(0);
    const ours: Record<string, string>[] = [
      {},
      { "sec-fetch-site": "same-origin", "sec-fetch-mode": "cors" },
      { "sec-fetch-site": "same-site", "sec-fetch-mode": "navigate", "sec-fetch-dest": "document" },
      { "sec-fetch-site": "none", "sec-fetch-mode": "navigate" },
    ];
    for (const headers of ours) {
      const res = await send("/pb/calls/next", { headers: { cookie, ...headers } });
      expect([JSON.stringify(headers), res.status]).toEqual([JSON.stringify(headers), 200]);
    }
    const scripted = await send("/pb/calls/next", {
      headers: { ...bearer(token), "sec-fetch-site": "cross-site", "sec-fetch-mode": "cors" },
    });
    expect(scripted.status).toBe(200);
  });

  it("a sibling origin's hidden frame is no navigation of the volunteer's: refused, forwarded nowhere, spending nothing", async () => {
    // frame-ancestors 'none' stops the answer rendering, not the request: an <iframe> (or <embed>,
    // <object>) of /pb/calls/next on another subdomain's page carries the SameSite=Strict cookie
    // as a "navigate" request, and would hand out a member and spend the volunteer's limits.
    const h = await make();
    const { g, send } = h;
    g.snapshot.campaigns.get("starmer-2020")!.limits = { requestsPerMinute: 2 };
    const token = await g.session();
    const cookie = `pl_session=${token}`;
    for (const dest of ["iframe", "frame", "embed", "object", "fencedframe"]) {
      const res = await send("/pb/calls/next", {
        headers: {
          cookie,
          "sec-fetch-site": "same-site",
          "sec-fetch-mode": "navigate",
          "sec-fetch-dest": dest,
        },
      });
      expect([dest, res.status, await errorCode(res)]).toEqual([dest, 403, "cross_site"]);
    }
    expect(g.phonebank.seen).toHaveLength(0);
    const ours = [
      await send("/pb/calls/next", {
        headers: {
          cookie,
          "sec-fetch-site": "same-site",
          "sec-fetch-mode": "navigate",
          "sec-fetch-dest": "document",
        },
      }),
      await send("/pb/calls/next", { headers: { cookie } }),
      await send("/pb/calls/next", { headers: { cookie } }),
    ];
    expect(ours.map((r) => r.status)).toEqual([200, 200, 429]);
  });
});
