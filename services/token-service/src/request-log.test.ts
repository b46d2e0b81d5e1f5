import { createLogger, messageLogger } from "@phaselock/core";
import { lineSink } from "@phaselock/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN, call, callJson, createHarness, type Harness, seedOpen } from "./test-support.ts";

let h: Harness;
/** Every line the service's real pino loggers wrote (request lines and error lines). */
const lines: string[] = [];
let code = "";
let token = "";

beforeAll(async () => {
  h = await createHarness();
  const destination = lineSink(lines);
  h.deps.requestLogger = createLogger({ service: "token-service", destination });
  h.deps.logger = messageLogger(createLogger({ service: "token-service", destination }));
  const { campaignId } = await seedOpen(h);
  const issued = await callJson<{ url: string; token: string }>(h, "POST", "/v1/links", {
    body: { campaignId, phase: "open", volunteer: { ref: "log-v1" }, scopes: ["calls:read"] },
  });
  expect(issued.status).toBe(201);
  code = new URL(issued.body.url).pathname.split("/").at(-1)!;
  token = issued.body.token;
});
afterAll(() => h.close());

const requestLines = () =>
  lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === "request");

describe("the token service's request lines never show a link token or short code", () => {
  it("masks every path no route matches, a link pointed at the wrong service included", async () => {
    const cases: [target: string, path: string][] = [
      [`/l/${code}`, "/…"],
      [`/l/${token}`, "/…"],
      [`/x/${code}`, "/…"],
      [`/${code}`, "/…"],
      [`/v1/${token}`, "/v1/…"],
      [`/v1/links/${code}/revoke`, "/v1/links/…"],
      [`/v1/keys/${code}/revoke/now`, "/v1/keys/…"],
      [`/.well-known/${code}`, "/.well-known/…"],
      [`/console/links/${code}/revoke/x`, "/console/links/…"],
      [`/console/${token}`, "/console/…"],
      [`/%6C/${code}`, "/…"],
    ];
    const before = requestLines().length;
    for (const [target] of cases) {
      const res = await call(h, "GET", target, { headers: { referer: `http://127.0.0.1:8080/l/${code}` } });
      expect(await res.text()).not.toContain(code);
    }
    expect(
      requestLines()
        .slice(before)
        .map((l) => l.path),
    ).toEqual(cases.map(([, path]) => path));
    const all = lines.join("\n");
    expect(all).not.toContain(code);
    expect(all).not.toContain(token);
  });

  it("shows identifiers of a matched route, never the query (`?token=`, `?t=`)", async () => {
    const before = requestLines().length;
    const refused = await call(h, "GET", `/v1/links?token=${code}&t=${token}`);
    expect(refused.status).toBe(400);
    expect(await refused.text()).not.toContain(code);
    await call(h, "GET", `/v1/contests/ge-2019?t=${token}`);
    await call(h, "POST", `/v1/keys/kid-1/revoke?token=${code}`, { body: { reason: "test" } });
    expect(
      requestLines()
        .slice(before)
        .map((l) => `${l.route} ${l.path}`),
    ).toEqual([
      "/v1/links /v1/links",
      "/v1/contests/:contestId /v1/contests/ge-2019",
      "/v1/keys/:kid/revoke /v1/keys/kid-1/revoke",
    ]);
    const all = lines.join("\n");
    expect(all).not.toContain(code);
    expect(all).not.toContain(token);
  });

  it("writes no token in the error line of a request that failed", async () => {
    const healthy = h.deps.audit.healthy;
    h.deps.audit.healthy = () => {
      throw new Error("audit state unreadable");
    };
    try {
      const res = await call(h, "POST", `/v1/links/${code}/x?t=${token}`, { body: {} });
      expect(res.status).toBe(500);
    } finally {
      h.deps.audit.healthy = healthy;
    }
    const errors = lines.filter((l) => (JSON.parse(l) as { level: string }).level === "error");
    expect(errors.at(-1)).toContain("unhandled error");
    expect(requestLines().at(-1)).toMatchObject({ path: "/v1/links/…", status: 500 });
    const all = lines.join("\n");
    expect(all).not.toContain(code);
    expect(all).not.toContain(token);
  });
});

describe("one request line per request", () => {
  it("writes one line for a console page, not one more for each API call the page makes", async () => {
    const signIn = await h.app.request("/console/sign-in", {
      method: "POST",
      body: new URLSearchParams({ apiKey: ADMIN }).toString(),
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        origin: "http://localhost",
        "sec-fetch-site": "same-origin",
      },
    });
    expect(signIn.status).toBe(303);
    const cookie = signIn.headers.get("set-cookie")!.split(";")[0]!;
    const before = requestLines().length;
    for (const page of ["/console/contests", "/console/campaigns", "/console/links"]) {
      const res = await h.app.request(page, { headers: { cookie } });
      expect(res.status).toBe(200);
    }
    expect(
      requestLines()
        .slice(before)
        .map((l) => `${l.method} ${l.path} ${l.status}`),
    ).toEqual(["GET /console/contests 200", "GET /console/campaigns 200", "GET /console/links 200"]);
    expect(lines.join("\n")).not.toContain(ADMIN);
  });
});
