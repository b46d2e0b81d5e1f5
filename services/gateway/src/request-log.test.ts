import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createLogger } from "@phaselock/core";
import { lineSink } from "@phaselock/testkit";
import { afterEach, describe, expect, it } from "vitest";
import { createNodeHandler } from "./node-handler.ts";
import { requestLogPath } from "./request-log.ts";
import { gatewayFixture } from "./test-support.ts";

/**
 * A fixture gateway on a socket (the node handler `main.ts` serves), its real pino logger writing
 * into `lines`. Requests go out through node:http with the target exactly as written (fetch would
 * resolve `..`, `\` and absolute forms before sending).
 */
async function logged() {
  const g = await gatewayFixture();
  const lines: string[] = [];
  g.deps.logger = createLogger({
    service: "gateway",
    destination: lineSink(lines),
  });
  const server = createServer(createNodeHandler(g.deps, g.app));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  servers.push(server);
  const { port } = server.address() as AddressInfo;
  const origin = `http://127.0.0.1:${port}`;
  let sent = 0;
  const send = (method: string, target: string, headers: Record<string, string> = {}) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      sent++;
      const req = request({ host: "127.0.0.1", port, method, path: target, headers }, (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on("error", reject);
      req.end();
    });
  /** Every request's line, once each answer is done (a line is written when its answer closes). */
  const requestLines = async () => {
    const requests = () => lines.filter((l) => (JSON.parse(l) as { msg?: string }).msg === "request");
    await expect.poll(() => requests().length).toBe(sent);
    return requests().map((l) => JSON.parse(l) as Record<string, unknown>);
  };
  return { ...g, lines, origin, send, requestLines };
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

describe("the gateway's request lines never show a link token or short code", () => {
  it("masks the routes whose path carries one: GET and POST /l/:token, by code and by token", async () => {
    const g = await logged();
    const { code } = await g.issueCode();
    const token = await g.issue();
    const secrets = [code, token];
    for (const credential of secrets) {
      expect((await g.send("GET", `/l/${credential}`, { accept: "text/html" })).status).toBe(200);
      const redeemed = await g.send("POST", `/l/${credential}`, {
        accept: "application/json",
        origin: g.origin,
      });
      expect(redeemed.status).toBe(201);
      // A refused one too: another site posting the link.
      const refused = await g.send("POST", `/l/${credential}`, { origin: "https://evil.example" });
      expect(refused.status).toBe(403);
    }
    const lines = await g.requestLines();
    expect(lines.map((l) => `${l.method} ${l.path}`)).toEqual([
      "GET /l/:token",
      "POST /l/:token",
      "POST /l/:token",
      "GET /l/:token",
      "POST /l/:token",
      "POST /l/:token",
    ]);
    const all = g.lines.join("\n");
    for (const s of secrets) expect(all).not.toContain(s);
  });

  it("masks every path no route matches, however a code was put in it", async () => {
    const g = await logged();
    const { code } = await g.issueCode();
    const token = await g.issue();
    const session = await g.session();
    const cases: [target: string, path: string][] = [
      [`/x/${code}`, "/…"],
      [`/${code}`, "/…"],
      [`/L/${code}`, "/…"],
      [`/l${code}`, "/…"],
      [`/l/${code}/more`, "/l/…"],
      [`/l/${token}/`, "/l/…"],
      [`/healthz/${code}`, "/healthz/…"],
      [`/signed-out/${code}`, "/signed-out/…"],
      [`/pb/${code}`, "/pb/…"],
      [`/pb/x/${token}`, "/pb/…"],
      [`/pb/calls/${code}/more`, "/pb/…"],
      [`/pb/_phaselock/${code}`, "/pb/_phaselock/…"],
      [`/pb/_phaselock/session/end/${code}`, "/pb/_phaselock/session/end/…"],
      [`/pb/./l/${code}`, "/pb/…"],
      [`/pb/%2e%2e/l/${code}`, "/pb/…"],
      // Spellings a router or URL parser takes to the landing page: masked as the landing page.
      [`/%6C/${code}`, "/l/:token"],
      [`/x/../l/${code}`, "/l/:token"],
      [`/%2e/l/${code}`, "/l/:token"],
      [`/l/${code}%`, "/l/:token"],
      [`/l/${code}%E0`, "/l/:token"],
      [`http://gateway.example/l/${code}`, "/l/:token"],
      [`//l/${code}`, "/…"],
      // node-server refuses a backslash (400); the line is written all the same.
      [`/l\\${code}`, "/l/:token"],
      [`/x\\${code}`, "/…"],
    ];
    for (const [target] of cases) await g.send("GET", target, { authorization: `Bearer ${session}` });
    const lines = await g.requestLines();
    expect(lines.map((l) => l.path)).toEqual(cases.map(([, path]) => path));
    const all = g.lines.join("\n");
    expect(all).not.toContain(code);
    expect(all).not.toContain(token);
    expect(all).not.toContain(session);
  });

  it("writes no query (`?token=`, `?t=`) and no Referer, on any route", async () => {
    const g = await logged();
    const { code } = await g.issueCode();
    const token = await g.issue();
    const session = await g.session();
    const referer = { referer: `${g.origin}/l/${code}?t=${token}` };
    const ok = await g.send("GET", `/pb/calls/next?token=${code}&t=${token}`, {
      authorization: `Bearer ${session}`,
      ...referer,
    });
    expect(ok.status).toBe(200);
    await g.send("GET", `/l/${code}?t=${token}`, referer);
    await g.send("GET", `/healthz?token=${code}`, referer);
    await g.send("GET", `/pb/members/m_000001?session=${session}`, { authorization: `Bearer ${session}` });
    await g.send("GET", `/x?token=${code}`, referer);
    const lines = await g.requestLines();
    expect(lines.map((l) => l.path)).toEqual([
      "/pb/calls/next",
      "/l/:token",
      "/healthz",
      "/pb/members/m_000001",
      "/…",
    ]);
    const all = g.lines.join("\n");
    for (const s of [code, token, session]) expect(all).not.toContain(s);
  });

  it("writes no token in the error line of a check that failed, nor of a proxy that did", async () => {
    const g = await logged();
    const { code } = await g.issueCode();
    const token = await g.issue();
    const session = await g.session();
    // Failures that quote what they were given, as a driver's or a client's error may.
    g.deps.links.getByCodeHash = async (hash) => {
      throw new Error(`lookup of ${code} (${hash}) failed`);
    };
    g.deps.verifier = {
      verify: async (t) => {
        throw new Error(`cannot verify ${t}`);
      },
    };
    g.deps.upstream = {
      forward: async (req) => {
        throw new TypeError(`fetch failed: ${JSON.stringify(req)} ${code}`);
      },
    };
    expect((await g.send("GET", `/l/${code}`, { accept: "text/html" })).status).toBe(503);
    expect((await g.send("POST", `/l/${token}`, { origin: g.origin })).status).toBe(503);
    const proxied = await g.send("GET", `/pb/calls/next?token=${code}`, {
      authorization: `Bearer ${session}`,
    });
    expect(proxied.status).toBeGreaterThanOrEqual(500);
    for (const body of [proxied.body]) expect(body).not.toContain(code);
    await g.requestLines();
    const errors = g.lines.filter((l) => (JSON.parse(l) as { level: string }).level === "error");
    expect(errors.length).toBeGreaterThanOrEqual(2);
    const all = g.lines.join("\n");
    for (const s of [code, token, session]) expect(all).not.toContain(s);
  });

  it("masks by the routes the gateway has: a route added with a secret parameter is masked as it is added", async () => {
    const g = await gatewayFixture();
    const logPath = requestLogPath(g.app, g.deps.routes);
    expect(logPath("/x/Zq3k9XbT2mWv8LpR4sNa1c", "GET")).toBe("/…");
    g.app.get("/x/:code", (c) => c.text("ok"));
    g.app.get("/things/:thingId", (c) => c.text("ok"));
    expect(logPath("/x/Zq3k9XbT2mWv8LpR4sNa1c", "GET")).toBe("/x/:code");
    expect(logPath("/things/t_1?token=Zq3k9XbT2mWv8LpR4sNa1c", "GET")).toBe("/things/t_1");
    // The upstream's routes by the table the proxy uses: identifiers shown, the rest refused.
    expect(logPath("/pb/members/%6D_1", "GET")).toBe("/pb/members/m_1");
    expect(logPath("/pb/calls/c_1/outcome", "POST")).toBe("/pb/calls/c_1/outcome");
    expect(logPath("/pb/calls/c_1/outcome", "GET")).toBe("/pb/…");
    expect(logPath("/pb/", "GET")).toBe("/pb/");
    expect(logPath("/pb", "GET")).toBe("/pb");
  });
});
