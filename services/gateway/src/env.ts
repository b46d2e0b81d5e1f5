import { httpUrl, nodeEnv, optionalString, parseEnv, port, postgresUrl, redisUrl } from "@phaselock/core";
import { z } from "zod";

/** The gateway's environment, parsed once by `main.ts`. */
export const envSchema = z.object({
  NODE_ENV: nodeEnv,
  GATEWAY_PORT: port(8080),
  HOST: z.string().min(1).default("127.0.0.1"),
  UPSTREAM_URL: httpUrl("http://127.0.0.1:8090"),
  TOKEN_SERVICE_URL: httpUrl("http://127.0.0.1:4000"),
  DATABASE_URL: postgresUrl,
  DATA_DIR: z.string().min(1).default("./.data"),
  REDIS_URL: redisUrl,
  STALE_AFTER_MS: z.coerce.number().int().min(100).default(5000),
  UPSTREAM_TIMEOUT_MS: z.coerce.number().int().min(1).default(10_000),
  MAX_BODY_BYTES: z.coerce
    .number()
    .int()
    .min(0)
    .default(64 * 1024),
  SECURE_COOKIES: z.stringbool().default(false),
  /** a link redeemed from more devices than this is suspended automatically */
  MAX_DEVICES_PER_LINK: z.coerce.number().int().min(1).default(3),
  /** longest life of a volunteer's session (never past its link's exp) */
  SESSION_TTL_SECONDS: z.coerce.number().int().min(60).default(43_200),
  /** base of the link URLs: redemptions are accepted from its origin */
  PUBLIC_GATEWAY_URL: httpUrl("http://127.0.0.1:8080"),
  PHONEBANK_SECRET: optionalString,
  /** key of the audit trail's IP hashes; must be shared by all gateways to group requests */
  AUDIT_IP_KEY: optionalString,
});

export type GatewayEnv = z.infer<typeof envSchema>;

export const parseGatewayEnv = (env: Record<string, string | undefined>): GatewayEnv =>
  parseEnv(envSchema, env);
