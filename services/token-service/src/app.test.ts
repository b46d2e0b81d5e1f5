import type { Db } from "@phaselock/db";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp, MAX_BODY_BYTES } from "./app.ts";
import { ADMIN, call, callJson, createHarness, type Harness } from "./test-support.ts";

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, 60_000);
afterAll(() => h.close());

const expectProblem = (res: Response, body: Record<string, unknown>, status: number, code: string) => {
  expect(res.status).toBe(status);
  expect(res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
  expect(body.code).toBe(code);
  expect(body.status).toBe(status);
  expect(body.type).toBe(`urn:phaselock:problem:${code}`);
  expect(typeof body.title).toBe("string");
  expect(typeof body.detail).toBe("string");
  expect(body.requestId).toBe(res.headers.get("x-request-id"));
};

describe("problem details and request ids", () => {
  it("answers an unknown route with a not_found problem", async () => {
    const { res, body } = await callJson(h, "GET", "/v1/nope");
    expectProblem(res, body, 404, "not_found");
  });

  it("sets X-Request-Id on every response, generating one when none is sent", async () => {
    const res = await call(h, "GET", "/healthz", { token: null });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-request-id")).toMatch(/^req_[0-9a-f-]{36}$/);
  });

  it("keeps a sane incoming request id and replaces an unsafe one", async () => {
    const kept = await call(h, "GET", "/healthz", { headers: { "X-Request-Id": "trace-abc.123:def" } });
    expect(kept.headers.get("x-request-id")).toBe("trace-abc.123:def");
    for (const unsafe of ["bad id <script>", "x".repeat(300), "short"]) {
      const replaced = await callJson(h, "GET", "/v1/nope", { headers: { "X-Request-Id": unsafe } });
      expect(replaced.res.headers.get("x-request-id")).toMatch(/^req_/);
      expect(replaced.body.requestId).toBe(replaced.res.headers.get("x-request-id"));
    }
  });

  it("refuses malformed JSON with a validation problem", async () => {
    const { res, body } = await callJson(h, "PUT", "/v1/contests/c1", { rawBody: '{"name": "x", ' });
    expectProblem(res, body, 400, "validation");
  });

  it("refuses a body that is not JSON with 415", async () => {
    const { res, body } = await callJson(h, "PUT", "/v1/contests/c1", {
      rawBody: "name=x",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
    });
    expectProblem(res, body, 415, "unsupported_media_type");
  });

  it("refuses a missing body with a validation problem", async () => {
    const { res, body } = await callJson(h, "PUT", "/v1/contests/c1");
    expectProblem(res, body, 400, "validation");
  });

  it("lists validation issues with JSON pointers", async () => {
    const { res, body } = await callJson<
      { errors: { in: string; pointer: string }[] } & Record<string, unknown>
    >(h, "PUT", "/v1/contests/c1", {
      body: {
        name: "x",
        phases: [{ name: "p", startsAt: "yesterday", endsAt: "2020-01-01T00:00:00Z", memberData: true }],
      },
    });
    expectProblem(res, body, 400, "validation");
    expect(body.errors).toContainEqual(
      expect.objectContaining({ in: "body", pointer: "#/phases/0/startsAt" }),
    );
  });

  it("refuses unknown fields", async () => {
    const { res, body } = await callJson(h, "PUT", "/v1/contests/c1", {
      body: { name: "x", phases: [], role: "admin" },
    });
    expectProblem(res, body, 400, "validation");
  });

  // JSON's `\uD800` escape parses to half of a character: Postgres cannot store it (it was a 500 on
  // PUT /v1/contests) and written out as UTF-8 it becomes U+FFFD, so it is refused where typed.
  it.each([
    ["a contest's name", "PUT", "/v1/contests/c-lone", { name: "Leader \uD800", phases: [] }, "#/name"],
    ["a campaign's name", "PUT", "/v1/campaigns/k-lone", { name: "\uDC00x", contestId: "c1" }, "#/name"],
    ["a key's label", "POST", "/v1/api-keys", { role: "admin", label: "ops \uD83D" }, "#/label"],
    [
      "a revocation's volunteer ref",
      "POST",
      "/v1/revocations",
      { scope: "volunteer", volunteerRef: "ada\uD800", reason: "left" },
      "#/volunteerRef",
    ],
    ["a revocation's reason", "POST", "/v1/revocations", { scope: "all", reason: "\uDFFF" }, "#/reason"],
  ] as const)("400 validation for a lone surrogate in %s", async (_what, method, path, body, pointer) => {
    const res = await callJson<{ errors: { pointer: string; detail: string }[] } & Record<string, unknown>>(
      h,
      method,
      path,
      { body },
    );
    expectProblem(res.res, res.body, 400, "validation");
    expect(res.body.errors).toContainEqual(
      expect.objectContaining({ pointer, detail: expect.stringMatching(/lone surrogate/) }),
    );
  });

  it("refuses a body over the limit with 413", async () => {
    const { res, body } = await callJson(h, "PUT", "/v1/contests/c1", {
      body: { name: "x".repeat(MAX_BODY_BYTES), phases: [] },
    });
    expectProblem(res, body, 413, "payload_too_large");
  });

  it("never lets a cache keep API answers", async () => {
    const res = await call(h, "GET", "/v1/links");
    expect(res.headers.get("cache-control")).toBe("no-store");
  });
});

describe("operations", () => {
  it("healthz answers 200", async () => {
    const { status, body } = await callJson(h, "GET", "/healthz", { token: null });
    expect(status).toBe(200);
    expect(body).toEqual({ status: "ok" });
  });

  it("readyz answers 200 while the database answers", async () => {
    const { status } = await callJson(h, "GET", "/readyz", { token: null });
    expect(status).toBe(200);
  });

  it("readyz answers 503 when the database does not answer", async () => {
    const down = { execute: () => Promise.reject(new Error("connection refused")) } as unknown as Db;
    const app = createApp({ ...h.deps, db: down });
    const res = await app.request("/readyz");
    const body = (await res.json()) as Record<string, unknown>;
    expectProblem(res, body, 503, "unavailable");
    expect(h.logs.some((l) => l.level === "warn" && l.msg.includes("database"))).toBe(true);
  });

  it("readyz answers 503 when an extra readiness check fails", async () => {
    const app = createApp({ ...h.deps, ready: () => false });
    const res = await app.request("/readyz");
    expect(res.status).toBe(503);
  });
});

describe("audit trail health", () => {
  it("refuses writes with 503 while the audit trail cannot be written, and still serves reads", async () => {
    const audit = { ...h.deps.audit, healthy: () => false, record: () => {} };
    const app = createApp({ ...h.deps, audit });
    const headers = { Authorization: `Bearer ${ADMIN}`, "Content-Type": "application/json" };
    const write = await app.request("/v1/revocations", {
      method: "POST",
      headers,
      body: JSON.stringify({ scope: "all", reason: "r" }),
    });
    expect(write.status).toBe(503);
    expect(((await write.json()) as { code: string }).code).toBe("unavailable");
    expect((await app.request("/v1/revocations", { headers })).status).toBe(200);
    expect((await app.request("/readyz")).status).toBe(503);
  });
});

describe("createApp options", () => {
  it("refuses an admin token shorter than 32 characters", () => {
    expect(() => createApp({ ...h.deps, config: { ...h.deps.config, adminToken: "short" } })).toThrow();
  });
});

describe("OpenAPI and docs", () => {
  it("serves an OpenAPI 3.1 document generated from the routes, with bearer security and problems", async () => {
    const res = await call(h, "GET", "/openapi.json", { token: null });
    expect(res.status).toBe(200);
    const doc = (await res.json()) as {
      openapi: string;
      paths: Record<string, Record<string, { security?: unknown; responses: Record<string, unknown> }>>;
      components: { securitySchemes: Record<string, unknown>; schemas: Record<string, unknown> };
    };
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: "http", scheme: "bearer" });
    expect(doc.components.schemas.Problem).toBeDefined();
    const expected: [string, string][] = [
      ["/v1/contests/{contestId}", "put"],
      ["/v1/contests/{contestId}", "get"],
      ["/v1/contests/{contestId}/phases/{phase}/end", "post"],
      ["/v1/campaigns/{campaignId}", "put"],
      ["/v1/campaigns/{campaignId}/entitlements/{phase}", "put"],
      ["/v1/campaigns/{campaignId}/entitlements/{phase}", "delete"],
      ["/v1/api-keys", "post"],
      ["/v1/api-keys/{id}", "delete"],
      ["/v1/links", "post"],
      ["/v1/links/batch", "post"],
      ["/v1/links", "get"],
      ["/v1/links/{id}", "get"],
      ["/v1/keys/rotate", "post"],
      ["/v1/revocations", "post"],
      ["/v1/revocations", "get"],
      ["/.well-known/jwks.json", "get"],
      ["/healthz", "get"],
      ["/readyz", "get"],
      ["/metrics", "get"],
    ];
    for (const [path, method] of expected)
      expect(doc.paths[path]?.[method], `${method} ${path}`).toBeDefined();
    const issue = doc.paths["/v1/links"]!.post!;
    expect(issue.security).toEqual([{ bearer: [] }]);
    expect(Object.keys(issue.responses).sort()).toEqual([
      "201",
      "400",
      "401",
      "403",
      "404",
      "409",
      "413",
      "415",
      "422",
      "503",
    ]);
    expect(doc.paths["/.well-known/jwks.json"]!.get!.security).toBeUndefined();
    const end = doc.paths["/v1/contests/{contestId}/phases/{phase}/end"]!.post!;
    expect(Object.keys(end.responses).sort()).toEqual([
      "200",
      "400",
      "401",
      "403",
      "404",
      "409",
      "413",
      "415",
      "503",
    ]);
    expect(doc.components.schemas.TimelineWarning).toBeDefined();
    // While the database is unreachable every route that reads it answers 503 unavailable.
    const undocumented = Object.entries(doc.paths).flatMap(([path, item]) =>
      Object.entries(item)
        .filter(
          ([, op]) => (op.security !== undefined || path.startsWith("/.well-known/")) && !op.responses["503"],
        )
        .map(([method]) => `${method} ${path}`),
    );
    expect(undocumented).toEqual([]);
    // The ref character set is documented where clients read it.
    expect(JSON.stringify(doc.components.schemas.Volunteer)).toContain("NFC");
  });

  it("lists every route of the contract's token-service table, the document and the console included", async () => {
    const doc = (
      await callJson<{ paths: Record<string, Record<string, unknown>> }>(h, "GET", "/openapi.json", {
        token: null,
      })
    ).body;
    const contract = [
      "PUT /v1/contests/{contestId}",
      "GET /v1/contests/{contestId}",
      "GET /v1/contests",
      "POST /v1/contests/{contestId}/phases/{phase}/end",
      "PUT /v1/campaigns/{campaignId}",
      "GET /v1/campaigns",
      "GET /v1/campaigns/{campaignId}",
      "PUT /v1/campaigns/{campaignId}/entitlements/{phase}",
      "DELETE /v1/campaigns/{campaignId}/entitlements/{phase}",
      "POST /v1/api-keys",
      "GET /v1/api-keys",
      "DELETE /v1/api-keys/{id}",
      "POST /v1/links",
      "POST /v1/links/batch",
      "GET /v1/links",
      "GET /v1/links/{id}",
      "POST /v1/revocations",
      "GET /v1/revocations",
      "GET /v1/audit",
      "GET /v1/audit/verify",
      "POST /v1/keys/rotate",
      "POST /v1/keys/{kid}/revoke",
      "GET /v1/audit/checkpoint",
      "GET /v1/audit/proof",
      "GET /.well-known/jwks.json",
      "GET /.well-known/audit-key",
      "GET /openapi.json",
      "GET /console",
    ];
    const missing = contract.filter((route) => {
      const [method, path] = route.split(" ") as [string, string];
      return doc.paths[path]?.[method.toLowerCase()] === undefined;
    });
    expect(missing).toEqual([]);
  });

  it("serves a self-contained HTML reference without scripts", async () => {
    const res = await call(h, "GET", "/docs", { token: null });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(res.headers.get("content-security-policy")).toContain("default-src 'none'");
    const html = await res.text();
    expect(html).toContain("/v1/links/batch");
    expect(html).toContain("urn:phaselock:problem:phase_closed");
    expect(html).not.toMatch(/<script|https?:\/\/(?!127\.0\.0\.1)/i);
  });
});
