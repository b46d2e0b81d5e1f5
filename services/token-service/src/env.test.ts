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
      // unset: where the gateway listens, the contract's http://127.0.0.1:8080 (stack env.test.ts)
      PUBLIC_GATEWAY_URL: undefined,
      GATEWAY_PORT: 8080,
      TOKEN_SERVICE_URL: undefined,
      AUDIT_CHECKPOINT_DIR: undefined,
      AUDIT_ORIGIN: undefined,
      METRICS_TOKEN: undefined,
      LOG_LEVEL: "info",
    });
  });

  it("takes a REDIS_PREFIX with a colon inside (acme:phaselock), never braces, spaces, globs or an edge colon", () => {
    expect(parseEnv({ REDIS_PREFIX: "acme:phaselock" }).REDIS_PREFIX).toBe("acme:phaselock");
    expect(parseEnv({ REDIS_PREFIX: "a" }).REDIS_PREFIX).toBe("a");
    for (const bad of ["{acme}", "acme phaselock", "acme*", ":acme", "acme:", "x".repeat(65)]) {
      expect(() => parseEnv({ REDIS_PREFIX: bad }), bad).toThrow(/REDIS_PREFIX/);
    }
  });

  it("keeps checkpoints in DATA_DIR unless AUDIT_CHECKPOINT_DIR is set (the contract's ./.data/checkpoints by default)", () => {
    expect(parseTokenServiceEnv({}).auditCheckpointDir).toBe("./.data/checkpoints");
    // A second data folder gets its own: notes of two logs in one folder collide by size.
    expect(parseTokenServiceEnv({ DATA_DIR: "/srv/phaselock/" }).auditCheckpointDir).toBe(
      "/srv/phaselock/checkpoints",
    );
    expect(
      parseTokenServiceEnv({ DATA_DIR: "/srv/phaselock", AUDIT_CHECKPOINT_DIR: "/mnt/notes" })
        .auditCheckpointDir,
    ).toBe("/mnt/notes");
  });

  it("refuses a malformed KEY_ENCRYPTION_KEY when the environment is read, before any database is opened", () => {
    for (const bad of ["bad", "ab".repeat(31), `${"A".repeat(42)}!`]) {
      expect(() => parseTokenServiceEnv({ KEY_ENCRYPTION_KEY: bad }), bad).toThrow(/KEY_ENCRYPTION_KEY/);
    }
    expect(parseTokenServiceEnv({ KEY_ENCRYPTION_KEY: "ab".repeat(32) }).keyEncryptionKey).toBe(
      "ab".repeat(32),
    );
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

  it("derives TOKEN_SERVICE_URL, the iss and the audit log's name, from where the service listens", () => {
    const at = (env: Record<string, string>) => {
      const { issuer, auditOrigin } = parseTokenServiceEnv(env);
      return { issuer, auditOrigin };
    };
    expect(at({})).toEqual({ issuer: "http://127.0.0.1:4000", auditOrigin: "127.0.0.1:4000/audit" });
    expect(at({ TOKEN_SERVICE_PORT: "4100" })).toEqual({
      issuer: "http://127.0.0.1:4100",
      auditOrigin: "127.0.0.1:4100/audit",
    });
    // A wildcard is where the service listens, not a URL a client can use.
    for (const HOST of ["0.0.0.0", "::", "0::0"]) {
      expect(at({ HOST, TOKEN_SERVICE_PORT: "4100" }).issuer).toBe("http://127.0.0.1:4100");
    }
    expect(at({ HOST: "10.0.0.7", TOKEN_SERVICE_PORT: "4100" }).issuer).toBe("http://10.0.0.7:4100");
    expect(at({ HOST: "tokens.internal" }).issuer).toBe("http://tokens.internal:4000");
    expect(at({ HOST: "::1", TOKEN_SERVICE_PORT: "4100" })).toEqual({
      issuer: "http://[::1]:4100",
      auditOrigin: "[::1]:4100/audit",
    });
    // An explicit URL wins; an empty one is unset.
    expect(at({ TOKEN_SERVICE_PORT: "4100", TOKEN_SERVICE_URL: "https://tokens.example.org/" })).toEqual({
      issuer: "https://tokens.example.org",
      auditOrigin: "tokens.example.org/audit",
    });
    expect(at({ TOKEN_SERVICE_PORT: "4100", TOKEN_SERVICE_URL: "" }).issuer).toBe("http://127.0.0.1:4100");
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
    ["a HOST no URL can hold", { HOST: "tokens internal" }],
    ["a non-http TOKEN_SERVICE_URL", { TOKEN_SERVICE_URL: "ftp://tokens.example.org" }],
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
