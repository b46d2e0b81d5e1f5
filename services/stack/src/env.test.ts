import { readFileSync } from "node:fs";
import { join } from "node:path";
import { gatewayEnvShape, parseGatewayEnv } from "@phaselock/gateway";
import { parseTokenServiceEnv, tokenServiceEnvShape } from "@phaselock/token-service";
import { describe, expect, it } from "vitest";
import { parseStackEnv, stackEnvShape } from "./env.ts";

/** The variables of the README's configuration table, in its order. */
function readmeSettings(): string[] {
  const readme = readFileSync(join(import.meta.dirname, "../../../README.md"), "utf8");
  const table = readme.slice(
    readme.indexOf("## Configuration"),
    readme.indexOf("## How a request is checked"),
  );
  return [...table.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]!);
}

/** A value other than the default for every setting, valid for both parsers. */
const SAMPLES: Record<string, string> = {
  TOKEN_SERVICE_PORT: "4100",
  GATEWAY_PORT: "8180",
  PHONEBANK_PORT: "8190",
  HOST: "0.0.0.0",
  UPSTREAM_URL: "https://phonebank.example.org/",
  PUBLIC_GATEWAY_URL: "https://links.example.org",
  TOKEN_SERVICE_URL: "https://tokens.example.org",
  DATABASE_URL: "postgres://u@db:5432/phaselock",
  DATA_DIR: "/var/lib/phaselock",
  DB_STALL_TIMEOUT_MS: "2500",
  REDIS_URL: "redis://cache:6379",
  REDIS_PREFIX: "campaign-b",
  ADMIN_TOKEN: `admin-${"a".repeat(40)}`,
  KEY_ENCRYPTION_KEY: "ab".repeat(32),
  PHONEBANK_SECRET: "p".repeat(40),
  STALE_AFTER_MS: "2500",
  AUDIT_IP_KEY: "i".repeat(40),
  MAX_DEVICES_PER_LINK: "1",
  MAX_BODY_BYTES: "1024",
  UPSTREAM_TIMEOUT_MS: "2000",
  SECURE_COOKIES: "true",
  TRUSTED_PROXIES: "10.0.0.1,192.168.0.0/16",
  BODY_TIMEOUT_MS: "1500",
  MAX_CONCURRENT_PER_LINK: "2",
  AUDIT_CHECKPOINT_DIR: "/var/lib/phaselock/checkpoints",
  AUDIT_ORIGIN: "audit.example.org/phaselock",
  SESSION_TTL_SECONDS: "3600",
  METRICS_TOKEN: "m".repeat(24),
  LOG_LEVEL: "warn",
};

const settings = readmeSettings();
// NODE_ENV alone changes no setting but the production rules, which have their own tests below.
const applied = settings.filter((name) => name !== "NODE_ENV");
const gatewaySettings = applied.filter((name) => name in gatewayEnvShape.shape);
const tokenServiceSettings = applied.filter((name) => name in tokenServiceEnvShape.shape);

describe("pnpm start applies every setting as the service alone does", () => {
  it("covers every row of the README's table, each read by some service", () => {
    expect(settings.length).toBeGreaterThan(15);
    expect(new Set(settings).size, "a README row per setting").toBe(settings.length);
    for (const name of applied) {
      expect(SAMPLES, `no sample value for ${name}`).toHaveProperty(name);
      const stackOnly = name === "PHONEBANK_PORT";
      expect(stackOnly || gatewaySettings.includes(name) || tokenServiceSettings.includes(name), name).toBe(
        true,
      );
    }
  });

  it("refuses a PHONEBANK_SECRET that pnpm start:phonebank refuses (shorter than 32)", () => {
    const short = { PHONEBANK_SECRET: "p".repeat(20) };
    expect(() => parseStackEnv(short)).toThrow(/PHONEBANK_SECRET: must be at least 32 characters/);
  });

  it("and every variable a service parses has its row (the phone bank's are a subset of the stack's)", () => {
    expect(Object.keys(stackEnvShape.shape).filter((name) => !settings.includes(name))).toEqual([]);
  });

  it("applies PUBLIC_GATEWAY_URL to both services: links handed out, redemptions accepted", () => {
    expect(gatewaySettings).toContain("PUBLIC_GATEWAY_URL");
    expect(tokenServiceSettings).toContain("PUBLIC_GATEWAY_URL");
    const stack = parseStackEnv({ PUBLIC_GATEWAY_URL: SAMPLES.PUBLIC_GATEWAY_URL });
    expect(stack.gateway.publicGatewayUrl).toBe(stack.tokenService.publicGatewayUrl);
  });

  it("hands out links on the gateway's own port unless PUBLIC_GATEWAY_URL says otherwise", () => {
    // GATEWAY_PORT alone moved the gateway while every link (and the start banner's) still named
    // :8080, where nothing listened; the token service alone now reads it for that default too.
    for (const env of [{}, { GATEWAY_PORT: "8180" }, { GATEWAY_PORT: "8180", HOST: "::1" }]) {
      const stack = parseStackEnv(env);
      expect(stack.tokenService.publicGatewayUrl).toBe(stack.gateway.publicGatewayUrl);
      expect(parseTokenServiceEnv(env).publicGatewayUrl).toBe(parseGatewayEnv(env).publicGatewayUrl);
    }
    expect(parseStackEnv({}).tokenService.publicGatewayUrl).toBe("http://127.0.0.1:8080");
    expect(parseStackEnv({ GATEWAY_PORT: "8180" }).tokenService.publicGatewayUrl).toBe(
      "http://127.0.0.1:8180",
    );
    expect(parseStackEnv({ GATEWAY_PORT: "8180", HOST: "0.0.0.0" }).gateway.publicGatewayUrl).toBe(
      "http://127.0.0.1:8180",
    );
    const set = { GATEWAY_PORT: "8180", PUBLIC_GATEWAY_URL: "https://links.example.org/" };
    expect(parseTokenServiceEnv(set).publicGatewayUrl).toBe("https://links.example.org");
  });

  it("treats a blank DATA_DIR, REDIS_PREFIX, HOST or PUBLIC_GATEWAY_URL as unset, as every other variable and the CLIs do", () => {
    // `DATA_DIR=` in a compose file or an env file was refused at start while `MAX_BODY_BYTES=`
    // kept its default and `pnpm db:backup` took the blank DATA_DIR as ./.data.
    const blank = { DATA_DIR: " ", REDIS_PREFIX: "", HOST: "", PUBLIC_GATEWAY_URL: "" };
    expect(parseStackEnv(blank)).toEqual(parseStackEnv({}));
    expect(parseGatewayEnv(blank)).toEqual(parseGatewayEnv({}));
    expect(parseTokenServiceEnv(blank)).toEqual(parseTokenServiceEnv({}));
    expect(parseStackEnv(blank).dataDir).toBe("./.data");
  });

  it("gives the gateway the iss the token service derives from TOKEN_SERVICE_PORT and HOST", () => {
    for (const env of [{}, { TOKEN_SERVICE_PORT: "4100" }, { TOKEN_SERVICE_PORT: "4100", HOST: "::1" }]) {
      const stack = parseStackEnv(env);
      expect(stack.gateway.issuer).toBe(stack.tokenService.issuer);
      expect(parseGatewayEnv(env).issuer).toBe(parseTokenServiceEnv(env).issuer);
    }
    expect(parseStackEnv({ TOKEN_SERVICE_PORT: "4100" }).tokenService.issuer).toBe("http://127.0.0.1:4100");
  });

  it("gives the same configs with nothing set", () => {
    expect(parseStackEnv({}).gateway).toEqual(parseGatewayEnv({}));
    expect(parseStackEnv({}).tokenService).toEqual(parseTokenServiceEnv({}));
  });

  it.each(gatewaySettings)("gateway: %s", (name) => {
    const env = { [name]: SAMPLES[name] };
    const alone = parseGatewayEnv(env);
    // The sample changes the gateway's config, so equal configs mean the stack applied it.
    expect(alone).not.toEqual(parseGatewayEnv({}));
    expect(parseStackEnv(env).gateway).toEqual(alone);
  });

  it.each(tokenServiceSettings)("token service: %s", (name) => {
    const env = { [name]: SAMPLES[name] };
    const alone = parseTokenServiceEnv(env);
    expect(alone).not.toEqual(parseTokenServiceEnv({}));
    expect(parseStackEnv(env).tokenService).toEqual(alone);
  });

  it("takes a Redis Cluster for REDIS_URL, for every service alike, and refuses a malformed one", () => {
    const cluster = "redis+cluster://:pw@10.0.0.1:7001,10.0.0.2:7002";
    const stack = parseStackEnv({ REDIS_URL: cluster });
    expect([stack.redisUrl, stack.gateway.redisUrl, stack.tokenService.redisUrl]).toEqual([
      cluster,
      cluster,
      cluster,
    ]);
    expect(parseGatewayEnv({ REDIS_URL: cluster }).redisUrl).toBe(cluster);
    for (const parse of [parseStackEnv, parseGatewayEnv, parseTokenServiceEnv]) {
      expect(() => parse({ REDIS_URL: "redis+cluster://:pw@10.0.0.1" })).toThrow(/REDIS_URL/);
      expect(() => parse({ REDIS_URL: "redis+cluster://:pw@10.0.0.1" })).not.toThrow(/pw/);
    }
  });

  it("points the gateway at the stack's phone bank unless UPSTREAM_URL says otherwise", () => {
    expect(parseStackEnv({ PHONEBANK_PORT: "8190" }).gateway.upstreamUrl).toBe("http://127.0.0.1:8190");
    expect(parseStackEnv({ PHONEBANK_PORT: "8190", UPSTREAM_URL: "http://pb:1" }).gateway.upstreamUrl).toBe(
      "http://pb:1",
    );
  });
});

describe("production rules", () => {
  const production = {
    NODE_ENV: "production",
    ADMIN_TOKEN: SAMPLES.ADMIN_TOKEN,
    KEY_ENCRYPTION_KEY: SAMPLES.KEY_ENCRYPTION_KEY,
    PHONEBANK_SECRET: SAMPLES.PHONEBANK_SECRET,
    AUDIT_IP_KEY: SAMPLES.AUDIT_IP_KEY,
  };
  const refusal = (parse: () => unknown): string => {
    try {
      parse();
    } catch (err) {
      return (err as Error).message;
    }
    return "";
  };

  it("start with every secret set", () => {
    expect(parseStackEnv(production).production).toBe(true);
    expect(parseGatewayEnv(production).production).toBe(true);
    expect(parseTokenServiceEnv(production).production).toBe(true);
  });

  it.each([
    ["KEY_ENCRYPTION_KEY", "token service"],
    ["ADMIN_TOKEN", "token service"],
    ["PHONEBANK_SECRET", "gateway"],
    ["AUDIT_IP_KEY", "gateway"],
  ] as const)("without %s, pnpm start refuses as the %s alone does", (name, service) => {
    const env: Record<string, string | undefined> = { ...production, [name]: undefined };
    const alone = refusal(() => (service === "gateway" ? parseGatewayEnv(env) : parseTokenServiceEnv(env)));
    expect(alone).toContain(`${name}: is required when NODE_ENV=production`);
    const stack = refusal(() => parseStackEnv(env));
    expect(stack).toContain(`${name}: is required when NODE_ENV=production`);
    // Never the value of another secret.
    for (const value of Object.values(production))
      if (value !== "production") expect(stack).not.toContain(value);
  });
});
