import type { Scope } from "@phaselock/core";
import { describe, expect, it } from "vitest";
import { createRouteMatcher, createRouteScopes, type RouteRule } from "./route-scopes.ts";

describe("default route scopes", () => {
  const scopes = createRouteScopes();
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
    // matching is case-sensitive, as the upstream's router is: this is a member id, not the export
    ["GET", "/members/Export", "members:read"],
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
