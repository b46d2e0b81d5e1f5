import { describe, expect, it } from "vitest";
import { DEV_PHONEBANK_SECRET, parsePhonebankEnv } from "./env.ts";

const STRONG = "a-production-secret-of-at-least-32-chars";

describe("phonebank env", () => {
  it("has contract defaults and a named development secret", () => {
    expect(parsePhonebankEnv({})).toEqual({
      nodeEnv: "development",
      port: 8090,
      host: "127.0.0.1",
      databaseUrl: undefined,
      secret: DEV_PHONEBANK_SECRET,
      usingDevSecret: true,
      metricsToken: undefined,
      logLevel: "info",
    });
    expect(parsePhonebankEnv({ PHONEBANK_SECRET: "  " }).usingDevSecret).toBe(true);
  });

  it("reads METRICS_TOKEN and LOG_LEVEL as the other services do", () => {
    const env = parsePhonebankEnv({ METRICS_TOKEN: "m".repeat(24), LOG_LEVEL: "warn" });
    expect([env.metricsToken, env.logLevel]).toEqual(["m".repeat(24), "warn"]);
    expect(() => parsePhonebankEnv({ LOG_LEVEL: "loud" })).toThrow(/LOG_LEVEL/);
    // Any length the operator picks (the contract names none); never one a bearer cannot carry.
    expect(parsePhonebankEnv({ METRICS_TOKEN: "metrics-secret" }).metricsToken).toBe("metrics-secret");
    expect(() => parsePhonebankEnv({ METRICS_TOKEN: "two words" })).toThrow(/METRICS_TOKEN/);
  });

  it("reads DATABASE_URL, a postgres:// URL, as the other services do", () => {
    expect(parsePhonebankEnv({ DATABASE_URL: "postgres://u@db:5432/phaselock" }).databaseUrl).toBe(
      "postgres://u@db:5432/phaselock",
    );
    expect(parsePhonebankEnv({ DATABASE_URL: "" }).databaseUrl).toBeUndefined();
    expect(() => parsePhonebankEnv({ DATABASE_URL: "mysql://x" })).toThrow(/DATABASE_URL/);
  });

  it("reads the port, host and secret", () => {
    expect(
      parsePhonebankEnv({ PHONEBANK_PORT: "9001", HOST: "0.0.0.0", PHONEBANK_SECRET: STRONG }),
    ).toMatchObject({
      port: 9001,
      host: "0.0.0.0",
      secret: STRONG,
      usingDevSecret: false,
    });
  });

  it("requires a real secret in production, and never names its value", () => {
    expect(() => parsePhonebankEnv({ NODE_ENV: "production" })).toThrow(/PHONEBANK_SECRET/);
    expect(() =>
      parsePhonebankEnv({ NODE_ENV: "production", PHONEBANK_SECRET: DEV_PHONEBANK_SECRET }),
    ).toThrow(/PHONEBANK_SECRET/);
    expect(parsePhonebankEnv({ NODE_ENV: "production", PHONEBANK_SECRET: STRONG }).secret).toBe(STRONG);
    try {
      parsePhonebankEnv({ PHONEBANK_SECRET: "short-secret-value" });
      expect.unreachable();
    } catch (err) {
      expect((err as Error).message).toMatch(/PHONEBANK_SECRET/);
      expect((err as Error).message).not.toContain("short-secret-value");
    }
  });

  it.each(["0", "65536", "http", "-1"])("refuses PHONEBANK_PORT=%s", (port) => {
    expect(() => parsePhonebankEnv({ PHONEBANK_PORT: port })).toThrow(/PHONEBANK_PORT/);
  });
});
