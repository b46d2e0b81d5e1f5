import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, callJson, createHarness, type Harness, seedOpen } from "../test-support.ts";

type Problem = { code: string; errors?: { in: string; pointer: string; detail: string }[] };
type Doc = {
  paths: Record<
    string,
    Record<string, { parameters?: { name: string; in: string }[]; responses?: Record<string, unknown> }>
  >;
};

let h: Harness;
let doc: Doc;
beforeAll(async () => {
  h = await createHarness();
  doc = (await callJson<Doc>(h, "GET", "/openapi.json", { token: null })).body;
}, 60_000);
afterAll(() => h.close());

const operations = () =>
  Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item)
      .filter(([method]) => ["get", "put", "post", "delete", "patch"].includes(method))
      .map(([method, op]) => ({ method: method.toUpperCase(), path, op })),
  );

describe("unknown query parameters are refused on every route", () => {
  it("walks every operation of the OpenAPI document: an unknown parameter is 400 validation", async () => {
    // The console's pages are for people, and checked apart (below).
    const ops = operations().filter(({ path }) => path !== "/console");
    expect(ops.length).toBeGreaterThan(25);
    for (const { method, path, op } of ops) {
      // What it answers, the document says it may: a route without a query of its own lists 400 too.
      expect({ route: `${method} ${path}`, documents400: op.responses?.["400"] !== undefined }).toEqual({
        route: `${method} ${path}`,
        documents400: true,
      });
      const url = `${path.replaceAll(/\{[^}]+\}/g, "x1")}?bogus=1`;
      const res = await callJson<Problem>(h, method, url, method === "GET" ? {} : { body: {} });
      expect({ route: `${method} ${path}`, status: res.status, code: res.body?.code }).toEqual({
        route: `${method} ${path}`,
        status: 400,
        code: "validation",
      });
      expect(res.body.errors?.[0]).toMatchObject({ in: "query", pointer: "#/bogus" });
    }
  });

  it("every query parameter the document declares is taken by its route, never refused as unknown", async () => {
    const declared = operations().flatMap(({ method, path, op }) =>
      (op.parameters ?? []).filter((p) => p.in === "query").map((p) => ({ method, path, name: p.name })),
    );
    expect(declared.length).toBeGreaterThan(20);
    for (const { method, path, name } of declared) {
      const url = `${path.replaceAll(/\{[^}]+\}/g, "x1")}?${name}=1`;
      const res = await callJson<Problem>(h, method, url, method === "GET" ? {} : { body: {} });
      const unknown = (res.body?.errors ?? []).filter((e) => e.detail.startsWith("unknown query parameter"));
      expect({ route: `${method} ${path}`, name, unknown }).toEqual({
        route: `${method} ${path}`,
        name,
        unknown: [],
      });
    }
  });

  it("but not on the console's pages: a browser's stray ?utm_source= still gets the page", async () => {
    for (const path of ["/console?utm_source=chat", "/console/sign-in?utm_source=chat"]) {
      const res = await call(h, "GET", path, { token: null });
      expect([path, res.status]).not.toEqual([path, 400]);
      expect(res.headers.get("content-type") ?? "").not.toMatch(/problem\+json/);
    }
  });

  it("and on the document and the docs page themselves", async () => {
    for (const path of ["/openapi.json", "/docs"]) {
      const res = await callJson<Problem>(h, "GET", `${path}?x=1`, { token: null });
      expect(res.status).toBe(400);
      expect(res.body.code).toBe("validation");
    }
  });

  it("the issue's cases: ?phase= on links, ?type= on the audit, unknown filter values", async () => {
    const { campaignId } = await seedOpen(h);
    const cases = [
      `/v1/links?campaignId=${campaignId}&phase=ballot`,
      "/v1/audit?type=access",
      "/v1/links?status=bogus",
      "/v1/audit?decision=maybe",
      "/v1/links?status=active&status=revoked",
      "/v1/contests?limit=10&limit=20",
    ];
    for (const url of cases) {
      const res = await callJson<Problem>(h, "GET", url);
      expect({ url, status: res.status, code: res.body.code }).toEqual({
        url,
        status: 400,
        code: "validation",
      });
    }
    const phase = await callJson<Problem>(h, "GET", "/v1/links?phase=ballot");
    expect(phase.body.errors?.[0]?.detail).toContain("campaignId");
  });

  it("declared parameters still work, and a secret-looking name is never echoed", async () => {
    const { campaignId } = await seedOpen(h);
    expect((await call(h, "GET", `/v1/links?campaignId=${campaignId}&status=active&limit=5`)).status).toBe(
      200,
    );
    expect((await call(h, "GET", "/v1/audit?decision=allow")).status).toBe(200);
    const secret = `plk_${"A".repeat(43)}`;
    const res = await call(h, "GET", `/v1/contests?${secret}`);
    expect(res.status).toBe(400);
    expect(await res.text()).not.toContain(secret);
  });
});
