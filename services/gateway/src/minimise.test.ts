import { describe, expect, it } from "vitest";
import { createUpstreamRoutes } from "./upstream-routes.ts";

describe("response minimisation", () => {
  const routes = createUpstreamRoutes([
    {
      method: "GET",
      pattern: "/a/:id",
      scope: "members:read",
      response: { allow: ["id", "x.y", "x.z", "list.n", "whole", "whole.inner"], recordId: "id" },
    },
  ]);
  const filter = (method: string, path: string) => routes(method, path)?.response ?? null;

  it("keeps only allow-listed fields, through objects and arrays", () => {
    const rule = filter("GET", "/a/1")!;
    const out = rule.apply({
      id: "m_1",
      secret: "s",
      x: { y: 1, z: 2, w: 3 },
      list: [
        { n: 1, email: "e" },
        { n: 2, email: "f" },
      ],
      whole: { anything: true },
    });
    expect(out).toEqual({
      body: { id: "m_1", x: { y: 1, z: 2 }, list: [{ n: 1 }, { n: 2 }], whole: { anything: true } },
      recordId: "m_1",
    });
  });

  it("unlisted routes pass; a non-object body becomes empty", () => {
    expect(filter("GET", "/b")).toBeNull();
    expect(filter("POST", "/a/1")).toBeNull();
    expect(filter("GET", "/a/1")!.apply("text")).toEqual({ body: {}, recordId: null });
  });
});
