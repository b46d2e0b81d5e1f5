import {
  blankIsUnset,
  dataDir,
  dbStallTimeoutMs,
  httpUrl,
  type LogLevel,
  listenHost,
  logLevel,
  metricsToken,
  nodeEnv,
  optionalHttpUrl,
  optionalString,
  parseEnv,
  phonebankSecret,
  port,
  postgresUrl,
  productionPhonebankSecret,
  publicGatewayUrl,
  redisPrefix,
  redisUrl,
  tokenServiceUrl,
} from "@phaselock/core";
import { z } from "zod";
import { isProxyEntry } from "./forwarding.ts";

/** The gateway's variables; `pnpm start` extends this shape rather than copying it. */
export const gatewayEnvShape = z.object({
  NODE_ENV: nodeEnv,
  GATEWAY_PORT: port(8080),
  HOST: listenHost,
  UPSTREAM_URL: httpUrl("http://127.0.0.1:8090"),
  /** unset: the token service's own default, derived from TOKEN_SERVICE_PORT and HOST */
  TOKEN_SERVICE_URL: optionalHttpUrl,
  /** read only for that default: the gateway does not talk to the token service */
  TOKEN_SERVICE_PORT: port(4000),
  DATABASE_URL: postgresUrl,
  DB_STALL_TIMEOUT_MS: dbStallTimeoutMs,
  DATA_DIR: dataDir,
  REDIS_URL: redisUrl,
  REDIS_PREFIX: redisPrefix,
  STALE_AFTER_MS: blankIsUnset(z.coerce.number().int().min(100).default(5000)),
  UPSTREAM_TIMEOUT_MS: blankIsUnset(z.coerce.number().int().min(1).default(10_000)),
  MAX_BODY_BYTES: blankIsUnset(
    z.coerce
      .number()
      .int()
      .min(0)
      .default(64 * 1024),
  ),
  SECURE_COOKIES: z.stringbool().default(false),
  /**
   * a link redeemed from more devices than this is suspended automatically; unset, a link opens on
   * as many devices as it has uses (`maxUses`, the contract's bound on a forwarded link)
   */
  MAX_DEVICES_PER_LINK: blankIsUnset(z.coerce.number().int().min(1).optional()),
  /** a request body not received whole within this is refused 408, before the upstream is asked */
  BODY_TIMEOUT_MS: blankIsUnset(z.coerce.number().int().min(1).default(10_000)),
  /** upstream requests one link may have in flight at once on a gateway; beyond, 429 */
  MAX_CONCURRENT_PER_LINK: blankIsUnset(z.coerce.number().int().min(1).default(8)),
  /** peers whose X-Forwarded-For is believed: comma-separated IPs and CIDRs (default none) */
  TRUSTED_PROXIES: z
    .string()
    .default("")
    .transform((v) =>
      v
        .split(",")
        .map((e) => e.trim())
        .filter((e) => e !== ""),
    )
    .refine((list) => list.every(isProxyEntry), "TRUSTED_PROXIES must be comma-separated IPs or CIDRs"),
  /** longest life of a volunteer's session (never past its link's exp) */
  SESSION_TTL_SECONDS: blankIsUnset(z.coerce.number().int().min(1).default(43_200)),
  /** base of the link URLs: redemptions are accepted from its origin; unset, see `publicGatewayUrl` */
  PUBLIC_GATEWAY_URL: optionalHttpUrl,
  /** the phone bank's own rule: one it refuses would only answer every request 502 */
  PHONEBANK_SECRET: phonebankSecret,
  /** key of the audit trail's IP hashes; must be shared by all gateways to group requests */
  AUDIT_IP_KEY: optionalString,
  METRICS_TOKEN: metricsToken,
  LOG_LEVEL: logLevel,
});

export type GatewayEnvVars = z.infer<typeof gatewayEnvShape>;

/** What a gateway is built from: every setting of the README's table that it reads. */
export interface GatewayServiceConfig {
  production: boolean;
  host: string;
  port: number;
  upstreamUrl: string;
  /** the token service URL: tokens' `iss` */
  issuer: string;
  databaseUrl: string | undefined;
  /** `DB_STALL_TIMEOUT_MS`: the stall watch's deadline (0: off; unset: its default) */
  dbStallTimeoutMs: number | undefined;
  dataDir: string;
  redisUrl: string | undefined;
  /** `REDIS_PREFIX`: every Redis key and channel starts with `<redisPrefix>:` */
  redisPrefix: string;
  staleAfterMs: number;
  upstreamTimeoutMs: number;
  maxBodyBytes: number;
  secureCookies: boolean;
  maxDevicesPerLink: number | undefined;
  trustedProxies: readonly string[];
  bodyTimeoutMs: number;
  maxConcurrentPerLink: number;
  sessionTtlSeconds: number;
  publicGatewayUrl: string;
  /** unset outside production: the starter supplies a development secret */
  phonebankSecret: string | undefined;
  /** unset outside production: the starter supplies a development key */
  auditIpKey: string | undefined;
  /** `METRICS_TOKEN`: the bearer `GET /metrics` requires, when set */
  metricsToken: string | undefined;
  logLevel: LogLevel;
}

/** A production gateway with a development secret would accept forged or unlinkable audit trails. */
export function gatewayProductionRules(env: GatewayEnvVars, ctx: z.RefinementCtx): void {
  if (env.NODE_ENV !== "production") return;
  // The phone bank's own rules: one it refuses would only answer every request 502.
  productionPhonebankSecret(env.PHONEBANK_SECRET, ctx);
  if (env.AUDIT_IP_KEY === undefined) {
    ctx.addIssue({ code: "custom", path: ["AUDIT_IP_KEY"], message: "is required when NODE_ENV=production" });
  }
}

export const toGatewayConfig = (env: GatewayEnvVars): GatewayServiceConfig => ({
  production: env.NODE_ENV === "production",
  host: env.HOST,
  port: env.GATEWAY_PORT,
  upstreamUrl: env.UPSTREAM_URL,
  issuer: tokenServiceUrl(env),
  databaseUrl: env.DATABASE_URL,
  dbStallTimeoutMs: env.DB_STALL_TIMEOUT_MS,
  dataDir: env.DATA_DIR,
  redisUrl: env.REDIS_URL,
  redisPrefix: env.REDIS_PREFIX,
  staleAfterMs: env.STALE_AFTER_MS,
  upstreamTimeoutMs: env.UPSTREAM_TIMEOUT_MS,
  maxBodyBytes: env.MAX_BODY_BYTES,
  secureCookies: env.SECURE_COOKIES,
  maxDevicesPerLink: env.MAX_DEVICES_PER_LINK,
  trustedProxies: env.TRUSTED_PROXIES,
  bodyTimeoutMs: env.BODY_TIMEOUT_MS,
  maxConcurrentPerLink: env.MAX_CONCURRENT_PER_LINK,
  sessionTtlSeconds: env.SESSION_TTL_SECONDS,
  publicGatewayUrl: publicGatewayUrl(env),
  phonebankSecret: env.PHONEBANK_SECRET,
  auditIpKey: env.AUDIT_IP_KEY,
  metricsToken: env.METRICS_TOKEN,
  logLevel: env.LOG_LEVEL,
});

/** The gateway's environment, parsed once by `main.ts`, into its config. */
export const envSchema = gatewayEnvShape.superRefine(gatewayProductionRules).transform(toGatewayConfig);

export const parseGatewayEnv = (env: Record<string, string | undefined>): GatewayServiceConfig =>
  parseEnv(envSchema, env);
