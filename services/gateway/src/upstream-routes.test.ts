import type { Scope } from "@phaselock/core";
import { describe, expect, it } from "vitest";
import { createRouteMatcher } from "./route-matcher.ts";
import { createUpstreamRoutes, DEFAULT_UPSTREAM_ROUTES, type UpstreamRoute } from "./upstream-routes.ts";

type RouteRule = Omit<UpstreamRoute, "response">;

/** The route → scope half of a table whose routes all pass their answers through. */
function createRouteScopes(rules: readonly RouteRule[] = DEFAULT_UPSTREAM_ROUTES) {
  const routes = createUpstreamRoutes(rules.map((r) => ({ response: "passthrough" as const, ...r })));
  return (method: string, path: string) => routes(method, path)?.scope ?? null;
}

describe("default route scopes", () => {
  const routes = createUpstreamRoutes();
  const scopes = (method: string, path: string) => routes(method, path)?.scope ?? null;
  it.each<[string, string, Scope | null]>([
    ["GET", "/", "calls:read"],
    ["HEAD", "/", "calls:read"],
    ["GET", "/calls/next", "calls:read"],
    ["HEAD", "/calls/next", "calls:read"],
    ["get", "/calls/next", "calls:read"],
    ["GET", "/calls/next?x=1", "calls:read"],
    ["POST", "/calls/c_1/outcome", "calls:write"],
    ["GET", "/members/m_000001", "members:read"],
    ["HEAD", "/members/m_000001", "members:read"],
    // the literal beats the parameter
    ["GET", "/members/export", "members:export"],
    ["HEAD", "/members/export", "members:export"],
    // default deny: wrong method
    ["POST", "/", null],
    ["POST", "/calls/next", null],
    ["GET", "/calls/c_1/outcome", null],
    ["PUT", "/calls/c_1/outcome", null],
    ["DELETE", "/members/m_000001", null],
    ["OPTIONS", "/members/export", null],
    ["POST", "/members/export", null],
    // default deny: unknown or odd paths
    ["GET", "/healthz", null],
    ["GET", "/members", null],
    ["GET", "/members/", null],
    ["GET", "/members//", null],
    ["GET", "/members/m_1/extra", null],
    ["GET", "/calls/next/", null],
    ["GET", "/calls", null],
    ["POST", "/calls//outcome", null],
    ["POST", "/calls/c_1/outcome/", null],
    ["GET", "/Members/export", null],
    ["GET", "", null],
    ["GET", "members/m_1", null],
    ["GET", "//", null],
    // a member id that spells the export in another case is no member id: an upstream whose router
    // folds case (ASP.NET, IIS) would serve the export to a members:read link
    ["GET", "/members/Export", null],
    ["GET", "/members/EXPORT", null],
    ["HEAD", "/members/eXpOrT", null],
    ["GET", "/members/export2", "members:read"],
    // a parameter never matches a dot segment
    ["GET", "/members/..", null],
    ["GET", "/members/.", null],
  ])("%s %s → %s", (method, path, want) => {
    expect(scopes(method, path)).toBe(want);
  });
});

describe("configured route scopes", () => {
  it("uses only the given rules (empty = deny everything)", () => {
    const none = createRouteScopes([]);
    expect(none("GET", "/")).toBeNull();
    expect(none("GET", "/calls/next")).toBeNull();

    const custom = createRouteScopes([
      { method: "GET", pattern: "/lists/:id/members/:n", scope: "members:read" },
    ]);
    expect(custom("GET", "/lists/a/members/7")).toBe("members:read");
    expect(custom("GET", "/lists/a/members")).toBeNull();
    expect(custom("GET", "/calls/next")).toBeNull();
  });

  it("prefers the most specific rule whatever the order", () => {
    const rules: RouteRule[] = [
      { method: "GET", pattern: "/a/:x/:y", scope: "calls:read" },
      { method: "GET", pattern: "/a/:x/c", scope: "calls:write" },
      { method: "GET", pattern: "/a/b/:y", scope: "members:read" },
      { method: "GET", pattern: "/a/b/c", scope: "members:export" },
    ];
    for (const order of [rules, [...rules].reverse()]) {
      const m = createRouteScopes(order);
      expect(m("GET", "/a/b/c")).toBe("members:export");
      expect(m("GET", "/a/b/z")).toBe("members:read");
      expect(m("GET", "/a/z/c")).toBe("calls:write");
      expect(m("GET", "/a/z/z")).toBe("calls:read");
    }
  });

  it("a path a case-folding router would give to a more specific rule matches no rule", () => {
    const m = createRouteScopes([
      { method: "GET", pattern: "/a/:x/:y", scope: "calls:read" },
      { method: "GET", pattern: "/a/b/:y", scope: "members:read" },
      { method: "GET", pattern: "/a/b/c", scope: "members:export" },
      { method: "POST", pattern: "/a/:x/:y", scope: "calls:write" },
      { method: "GET", pattern: "/z/:q", scope: "calls:read" },
    ]);
    expect(m("GET", "/a/b/c")).toBe("members:export");
    expect(m("GET", "/a/b/C")).toBeNull(); // /a/b/:y must not take C
    expect(m("GET", "/a/B/z")).toBeNull(); // /a/:x/:y must not take B
    expect(m("GET", "/a/q/c")).toBe("calls:read"); // no rule /a/q/c: nothing to mistake it for
    expect(m("POST", "/a/B/C")).toBe("calls:write"); // POST has no sibling literals
    expect(m("GET", "/z/b")).toBe("calls:read"); // another prefix's literal is no sibling
  });

  it.each<[string, RouteRule[]]>([
    ["lower-case method", [{ method: "get", pattern: "/", scope: "calls:read" }]],
    ["HEAD rule", [{ method: "HEAD", pattern: "/", scope: "calls:read" }]],
    ["relative pattern", [{ method: "GET", pattern: "calls", scope: "calls:read" }]],
    ["empty segment", [{ method: "GET", pattern: "/calls//next", scope: "calls:read" }]],
    ["dot segment", [{ method: "GET", pattern: "/calls/..", scope: "calls:read" }]],
    ["bad param", [{ method: "GET", pattern: "/calls/:", scope: "calls:read" }]],
    ["unknown scope", [{ method: "GET", pattern: "/", scope: "admin" as Scope }]],
    [
      "duplicate shape",
      [
        { method: "GET", pattern: "/members/:id", scope: "members:read" },
        { method: "GET", pattern: "/members/:other", scope: "members:export" },
      ],
    ],
  ])("refuses a malformed config: %s", (_name, rules) => {
    expect(() => createRouteScopes(rules)).toThrow();
  });
});

describe("createRouteMatcher", () => {
  it("returns the value of the matching entry", () => {
    const m = createRouteMatcher([
      { method: "GET", pattern: "/members/:id", value: "one" },
      { method: "GET", pattern: "/members/export", value: "all" },
    ]);
    expect(m("GET", "/members/m_1")).toBe("one");
    expect(m("HEAD", "/members/export")).toBe("all");
    expect(m("POST", "/members/m_1")).toBeNull();
  });
});

describe("one upstream route table: scope and response rule", () => {
  const routes = createUpstreamRoutes();

  it("gives the calling page an explicit passthrough and the member routes their allow-lists", () => {
    const page = DEFAULT_UPSTREAM_ROUTES.find((r) => r.method === "GET" && r.pattern === "/");
    expect(page?.response).toBe("passthrough");
    expect(routes("GET", "/")).toEqual({ pattern: "GET /", scope: "calls:read", response: null });
    expect(routes("HEAD", "/members/m_1")?.pattern).toBe("GET /members/:id");
    expect(routes("GET", "/calls/next")?.response?.assignsRecord).toBe(true);
    const member = routes("GET", "/members/m_1")?.response;
    expect(member?.apply({ id: "m_1", name: "A", email: "a@example.invalid" })).toEqual({
      body: { id: "m_1", name: "A" },
      recordId: "m_1",
    });
  });

  it("decides every default route's answer: an allow-list or an explicit passthrough", () => {
    for (const r of DEFAULT_UPSTREAM_ROUTES) {
      expect(
        r.response === "passthrough" || Array.isArray(r.response.allow),
        `${r.method} ${r.pattern}`,
      ).toBe(true);
    }
  });

  it("refuses a route without a response rule, in the types and at startup", () => {
    const unruled = { method: "GET", pattern: "/members/:id/notes", scope: "members:read" } as const;
    // @ts-expect-error a route must say what of its answer a volunteer sees
    const rules: UpstreamRoute[] = [unruled];
    expect(() => createUpstreamRoutes(rules)).toThrow(/response rule/);
    expect(() =>
      createUpstreamRoutes([
        { ...unruled, response: { recordId: "id" } as unknown as UpstreamRoute["response"] },
      ]),
    ).toThrow(/response rule/);
  });
});
