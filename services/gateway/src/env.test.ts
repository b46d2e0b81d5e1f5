import { DEV_PHONEBANK_SECRET } from "@phaselock/core";
import { describe, expect, it } from "vitest";
import { parseGatewayEnv } from "./env.ts";

describe("parseGatewayEnv", () => {
  it("expects the iss the token service derives from TOKEN_SERVICE_PORT unless TOKEN_SERVICE_URL is set", () => {
    expect(parseGatewayEnv({}).issuer).toBe("http://127.0.0.1:4000");
    expect(parseGatewayEnv({ TOKEN_SERVICE_PORT: "4100" }).issuer).toBe("http://127.0.0.1:4100");
    expect(parseGatewayEnv({ TOKEN_SERVICE_PORT: "4100", HOST: "0.0.0.0" }).issuer).toBe(
      "http://127.0.0.1:4100",
    );
    expect(parseGatewayEnv({ TOKEN_SERVICE_PORT: "4100", HOST: "::1" }).issuer).toBe("http://[::1]:4100");
    expect(
      parseGatewayEnv({ TOKEN_SERVICE_PORT: "4100", TOKEN_SERVICE_URL: "https://tokens.example.org/" })
        .issuer,
    ).toBe("https://tokens.example.org");
  });

  it("refuses a bad TOKEN_SERVICE_PORT or HOST", () => {
    expect(() => parseGatewayEnv({ TOKEN_SERVICE_PORT: "70000" })).toThrow(/TOKEN_SERVICE_PORT/);
    expect(() => parseGatewayEnv({ HOST: "gateway internal" })).toThrow(/HOST/);
  });

  it("in production refuses a PHONEBANK_SECRET the phone bank would refuse: short, or the development one", () => {
    const production = { NODE_ENV: "production", AUDIT_IP_KEY: "k".repeat(32) };
    expect(() => parseGatewayEnv({ ...production, PHONEBANK_SECRET: "s".repeat(31) })).toThrow(
      /PHONEBANK_SECRET: must be at least 32 characters/,
    );
    expect(() => parseGatewayEnv({ ...production, PHONEBANK_SECRET: DEV_PHONEBANK_SECRET })).toThrow(
      /PHONEBANK_SECRET: must not be the development secret/,
    );
    expect(parseGatewayEnv({ ...production, PHONEBANK_SECRET: "s".repeat(32) }).phonebankSecret).toBe(
      "s".repeat(32),
    );
  });

  it("outside production too, refuses a PHONEBANK_SECRET shorter than the phone bank takes", () => {
    expect(() => parseGatewayEnv({ PHONEBANK_SECRET: "s".repeat(31) })).toThrow(
      /PHONEBANK_SECRET: must be at least 32 characters/,
    );
    expect(parseGatewayEnv({ PHONEBANK_SECRET: "  " }).phonebankSecret).toBeUndefined();
    expect(parseGatewayEnv({ PHONEBANK_SECRET: "s".repeat(32) }).phonebankSecret).toBe("s".repeat(32));
  });

  it("takes any SESSION_TTL_SECONDS of a second or more (a short one for a trial), refusing 0", () => {
    expect(parseGatewayEnv({}).sessionTtlSeconds).toBe(43_200);
    expect(parseGatewayEnv({ SESSION_TTL_SECONDS: "20" }).sessionTtlSeconds).toBe(20);
    expect(() => parseGatewayEnv({ SESSION_TTL_SECONDS: "0" })).toThrow(/SESSION_TTL_SECONDS/);
  });
  it("reads an empty numeric variable as unset, as it does a string one (never as 0)", () => {
    const blank = {
      GATEWAY_PORT: "",
      TOKEN_SERVICE_PORT: " ",
      STALE_AFTER_MS: "",
      UPSTREAM_TIMEOUT_MS: "",
      MAX_BODY_BYTES: "",
      MAX_DEVICES_PER_LINK: "",
      BODY_TIMEOUT_MS: "",
      MAX_CONCURRENT_PER_LINK: "",
      SESSION_TTL_SECONDS: "",
    };
    const pick = (e: ReturnType<typeof parseGatewayEnv>) => [
      e.port,
      e.issuer,
      e.staleAfterMs,
      e.upstreamTimeoutMs,
      e.maxBodyBytes,
      e.maxDevicesPerLink,
      e.bodyTimeoutMs,
      e.maxConcurrentPerLink,
      e.sessionTtlSeconds,
    ];
    expect(pick(parseGatewayEnv(blank))).toEqual(pick(parseGatewayEnv({})));
    expect(parseGatewayEnv(blank).maxBodyBytes).toBe(64 * 1024);
    expect(parseGatewayEnv({ MAX_BODY_BYTES: "0" }).maxBodyBytes).toBe(0);
    expect(() => parseGatewayEnv({ GATEWAY_PORT: "x" })).toThrow(/GATEWAY_PORT/);
  });
});
