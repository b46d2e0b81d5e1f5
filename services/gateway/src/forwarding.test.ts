import { describe, expect, it } from "vitest";
import { parseGatewayEnv } from "./env.ts";
import { isProxyEntry, resolveForwarded } from "./forwarding.ts";
import { contextHeaderValue } from "./upstream.ts";

describe("resolveForwarded: who the client is", () => {
  it("with no trusted proxy the peer is the client, whatever the header says", () => {
    expect(resolveForwarded([], "192.0.2.7", "203.0.113.1")).toEqual({
      client: "192.0.2.7",
      chain: "192.0.2.7",
    });
    expect(resolveForwarded(undefined, "::ffff:192.0.2.7", undefined)).toEqual({
      client: "192.0.2.7",
      chain: "192.0.2.7",
    });
    expect(resolveForwarded([], undefined, "203.0.113.1")).toEqual({ client: undefined, chain: undefined });
  });

  it("an untrusted peer's header is ignored even when proxies are configured", () => {
    expect(resolveForwarded(["10.0.0.0/8"], "192.0.2.7", "203.0.113.1")).toEqual({
      client: "192.0.2.7",
      chain: "192.0.2.7",
    });
  });

  it("a trusted peer: appended to; the client is the rightmost address that is not a trusted proxy", () => {
    const trusted = ["10.0.0.0/8", "2001:db8::/32"];
    expect(resolveForwarded(trusted, "10.1.2.3", "198.51.100.1, 203.0.113.1, 10.9.9.9")).toEqual({
      client: "203.0.113.1",
      chain: "198.51.100.1, 203.0.113.1, 10.9.9.9, 10.1.2.3",
    });
    expect(resolveForwarded(trusted, "2001:db8::1", "2001:db8::2")).toEqual({
      client: "2001:db8::2",
      chain: "2001:db8::2, 2001:db8::1",
    });
  });

  it("entries that are not addresses end the chain; what is left of them is dropped", () => {
    expect(resolveForwarded(["10.0.0.1"], "10.0.0.1", "198.51.100.1, unknown, 203.0.113.1")).toEqual({
      client: "203.0.113.1",
      chain: "203.0.113.1, 10.0.0.1",
    });
    expect(resolveForwarded(["10.0.0.1"], "10.0.0.1", "<script>")).toEqual({
      client: "10.0.0.1",
      chain: "10.0.0.1",
    });
  });
});

describe("TRUSTED_PROXIES", () => {
  it("takes comma-separated IPs and CIDRs, default none", () => {
    expect(parseGatewayEnv({}).trustedProxies).toEqual([]);
    expect(
      parseGatewayEnv({ TRUSTED_PROXIES: " 10.0.0.0/8, 192.0.2.1 ,::1, 2001:db8::/32" }).trustedProxies,
    ).toEqual(["10.0.0.0/8", "192.0.2.1", "::1", "2001:db8::/32"]);
    for (const bad of ["10.0.0.0/33", "example.com", "10.0.0.1/8/1", "::1/129", "10.0.0.0/"]) {
      expect([bad, isProxyEntry(bad)]).toEqual([bad, false]);
      expect(() => parseGatewayEnv({ TRUSTED_PROXIES: bad })).toThrow();
    }
  });

  it("body deadline and in-flight limit have their defaults", () => {
    const env = parseGatewayEnv({});
    expect([env.bodyTimeoutMs, env.maxConcurrentPerLink]).toEqual([10_000, 8]);
  });
});

describe("contextHeaderValue", () => {
  it("keeps plain printable ASCII, percent-encodes anything else as UTF-8", () => {
    expect(contextHeaderValue("calls:read members:read")).toBe("calls:read members:read");
    expect(contextHeaderValue("Łukasz-1")).toBe("%C5%81ukasz-1");
    expect(contextHeaderValue("a\r\nb")).toBe("a%0D%0Ab");
    expect(contextHeaderValue(" x")).toBe("%20x");
    expect(contextHeaderValue("é~_.")).toBe("%C3%A9~_.");
  });
});
