import { describe, expect, it } from "vitest";
import { createLogPath, routeLogPath } from "./log-path.ts";

const CODE = "Zq3k9XbT2mWv8LpR4sNa1c";
const logPath = createLogPath([
  "*",
  "/healthz",
  "/l/:token",
  "/x/:code",
  "/v1/*",
  "/v1/contests/:contestId/phases/:phase/end",
  "/v1/keys/:kid/revoke",
  "/members/export",
  "/members/:id",
  "/console/",
  "/",
]);

describe("createLogPath", () => {
  it("writes a matched route's identifiers and the name of any other parameter", () => {
    expect(logPath(`/l/${CODE}`)).toBe("/l/:token");
    expect(logPath(`/x/${CODE}`)).toBe("/x/:code");
    expect(logPath("/v1/contests/ge-2019/phases/ballot/end")).toBe("/v1/contests/ge-2019/phases/ballot/end");
    expect(logPath("/v1/keys/k_1/revoke")).toBe("/v1/keys/k_1/revoke");
    expect(logPath("/members/m_1")).toBe("/members/m_1");
    expect(logPath("/members/export")).toBe("/members/export");
    expect(logPath("/console/")).toBe("/console/");
    expect(logPath("/")).toBe("/");
    expect(logPath("/healthz")).toBe("/healthz");
  });

  it("writes an identifier's value as its name when it has a credential's shape (a code pasted into an id)", () => {
    expect(logPath(`/members/${CODE}`)).toBe("/members/:id");
    expect(logPath("/members/pls_Zq3k9XbT2mWv8LpR4sNa1c")).toBe("/members/:id");
    expect(logPath(`/members/plk_${"A".repeat(43)}`)).toBe("/members/:id");
    expect(logPath("/members/eyJhbGciOiJFZERTQSJ9.e30.sig")).toBe("/members/:id");
    expect(logPath(`/members/m${"0".repeat(64)}`)).toBe("/members/:id");
    // Wrapped, encoded or pasted whole: still no code in the line.
    for (const wrapped of [
      `${CODE}.`,
      `${CODE};x`,
      `%20${CODE}`,
      `${CODE}=`,
      `${CODE}%0A`,
      `x%2F${CODE}`,
      `https%3A%2F%2Fgw.example%2Fl%2F${CODE}`,
      `ab_${CODE.slice(3)}`,
      `pla_${"B".repeat(43)}`,
      "a".repeat(10) + "0123456789abcdef".repeat(4),
      "0123456789abcdef".repeat(4),
    ]) {
      expect(logPath(`/members/${wrapped}`), wrapped).toBe("/members/:id");
    }
    // Identifiers keep their values: generated ids, slugs, a key's 43-character thumbprint.
    expect(logPath("/members/lnk_Zq3k9XbT2mWv8LpR4sNa1c")).toBe("/members/lnk_Zq3k9XbT2mWv8LpR4sNa1c");
    expect(logPath("/members/m_000001")).toBe("/members/m_000001");
    const kid = "3qJ9xVw2Lk8mN4pR7sT1uY6zA0bC5dE-fG_hI2jK3lM";
    expect(logPath(`/v1/keys/${kid}/revoke`)).toBe(`/v1/keys/${kid}/revoke`);
    expect(logPath("/v1/contests/leadership-2020/phases/hustings/end")).toBe(
      "/v1/contests/leadership-2020/phases/hustings/end",
    );
  });

  it("writes only the leading route segments of a path no route matches", () => {
    expect(logPath(`/y/${CODE}`)).toBe("/…");
    expect(logPath(`/${CODE}`)).toBe("/…");
    expect(logPath(`/L/${CODE}`)).toBe("/…");
    expect(logPath(`/l/${CODE}/more`)).toBe("/l/…");
    expect(logPath("/l/")).toBe("/l/…");
    expect(logPath("/l")).toBe("/l");
    expect(logPath(`/v1/${CODE}`)).toBe("/v1/…");
    expect(logPath(`/v1/keys/${CODE}`)).toBe("/v1/keys/…");
    expect(logPath(`/healthz/${CODE}`)).toBe("/healthz/…");
    expect(logPath(`//l/${CODE}`)).toBe("/…");
    expect(logPath("")).toBe("/…");
    expect(logPath("*")).toBe("/…");
  });

  it("never writes a query", () => {
    expect(logPath(`/healthz?token=${CODE}`)).toBe("/healthz");
    expect(logPath(`/members/m_1?t=${CODE}#x`)).toBe("/members/m_1");
    expect(logPath(`/?token=${CODE}`)).toBe("/");
  });

  it("masks every spelling a router or URL parser takes to the route", () => {
    for (const target of [
      `/%6C/${CODE}`,
      `/%6c/${CODE}?x`,
      `/./l/${CODE}`,
      `/x/../l/${CODE}`,
      `/%2e/l/${CODE}`,
      `/%2E%2E/l/${CODE}`,
      `/x/%2e%2E/l/${CODE}`,
      `/l\\${CODE}`,
      `\\l\\${CODE}`,
      `http://gateway.example/l/${CODE}`,
      `https://user:pw@gateway.example/./l/${CODE}?t=1`,
      `/l/${CODE}%`,
      `/l/${CODE}%E0`,
      `/%6C/${CODE}%ZZ`,
    ]) {
      expect(logPath(target), target).toBe("/l/:token");
    }
    expect(logPath("/members/%6D_1")).toBe("/members/m_1");
    // An encoded slash stays in its segment (as a router reads it), which no identifier holds.
    expect(logPath("/members/a%2Fb")).toBe("/members/:id");
    expect(logPath("/members/x/..")).toBe("/members/…");
    // A malformed escape is no identifier either.
    expect(logPath("/members/%ED%A0%80")).toBe("/members/:id");
  });

  it("shows a segment only when every route matching the path would show it", () => {
    const overlapping = createLogPath(["/things/:id", "/things/:secret", "/things/list"]);
    expect(overlapping("/things/t_1")).toBe("/things/:secret");
    expect(overlapping("/things/list")).toBe("/things/:secret");
    expect(createLogPath(["/things/:id", "/things/list"])("/things/list")).toBe("/things/list");
  });

  it("bounds what it writes", () => {
    const long = "x".repeat(300);
    expect(createLogPath([`/${long}`])(`/${long}`)).toHaveLength(257);
  });
});

describe("routeLogPath", () => {
  it("follows routes added after it was built", () => {
    const app = { routes: [{ path: "/healthz" }] as { path: string }[] };
    const log = routeLogPath(app);
    expect(log(`/s/${CODE}`)).toBe("/…");
    app.routes.push({ path: "/s/:session" }, { path: "/r/:campaignId" });
    expect(log(`/s/${CODE}`)).toBe("/s/:session");
    expect(log("/r/starmer-2020")).toBe("/r/starmer-2020");
  });
});
