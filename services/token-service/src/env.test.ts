import { describe, expect, it } from "vitest";
import { parseEnv, parseTokenServiceEnv } from "./env.ts";

describe("parseEnv", () => {
  it("applies the contract's defaults", () => {
    expect(parseEnv({})).toEqual({
      NODE_ENV: "development",
      TOKEN_SERVICE_PORT: 4000,
      HOST: "127.0.0.1",
      DATABASE_URL: undefined,
      DATA_DIR: "./.data",
      REDIS_URL: undefined,
      REDIS_PREFIX: "phaselock",
      ADMIN_TOKEN: undefined,
      KEY_ENCRYPTION_KEY: undefined,
      PUBLIC_GATEWAY_URL: "http://127.0.0.1:8080",
      TOKEN_SERVICE_URL: "http://127.0.0.1:4000",
      AUDIT_CHECKPOINT_DIR: "./.data/checkpoints",
      AUDIT_ORIGIN: undefined,
      METRICS_TOKEN: undefined,
      LOG_LEVEL: "info",
    });
  });

  it("names the audit log after TOKEN_SERVICE_URL's host unless AUDIT_ORIGIN is set", () => {
    expect(parseTokenServiceEnv({ TOKEN_SERVICE_URL: "https://tokens.example.org:8443" }).auditOrigin).toBe(
      "tokens.example.org:8443/audit",
    );
    expect(parseTokenServiceEnv({ AUDIT_ORIGIN: "log.example/phaselock" }).auditOrigin).toBe(
      "log.example/phaselock",
    );
    expect(() => parseTokenServiceEnv({ AUDIT_ORIGIN: "a+b" })).toThrow(/AUDIT_ORIGIN/);
  });

  it("reads every variable, treating empty strings as unset and trimming URL slashes", () => {
    const env = parseEnv({
      NODE_ENV: "production",
      TOKEN_SERVICE_PORT: "4100",
      HOST: "0.0.0.0",
      DATABASE_URL: "postgres://u@db:5432/phaselock",
      REDIS_URL: "",
      ADMIN_TOKEN: "a".repeat(32),
      PUBLIC_GATEWAY_URL: "https://links.example.org/",
      TOKEN_SERVICE_URL: "https://tokens.example.org",
    });
    expect(env).toMatchObject({
      NODE_ENV: "production",
      TOKEN_SERVICE_PORT: 4100,
      HOST: "0.0.0.0",
      DATABASE_URL: "postgres://u@db:5432/phaselock",
      REDIS_URL: undefined,
      PUBLIC_GATEWAY_URL: "https://links.example.org",
    });
  });

  it.each([
    ["a short ADMIN_TOKEN", { ADMIN_TOKEN: "short" }],
    ["an ADMIN_TOKEN with spaces", { ADMIN_TOKEN: `${"a".repeat(20)} ${"b".repeat(20)}` }],
    ["a bad port", { TOKEN_SERVICE_PORT: "70000" }],
    ["a non-postgres DATABASE_URL", { DATABASE_URL: "mysql://x" }],
    ["a non-http gateway URL", { PUBLIC_GATEWAY_URL: "javascript:alert(1)" }],
    ["an unknown NODE_ENV", { NODE_ENV: "staging" }],
    ["an AUDIT_ORIGIN with a space", { AUDIT_ORIGIN: "my log" }],
  ])("refuses %s without echoing the value", (_, env) => {
    let message = "";
    try {
      parseEnv(env);
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/^invalid environment/);
    for (const value of Object.values(env)) expect(message).not.toContain(value);
  });
});
