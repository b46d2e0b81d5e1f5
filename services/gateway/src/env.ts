import { httpUrl, nodeEnv, optionalString, parseEnv, port, postgresUrl, redisUrl } from "@phaselock/core";
import { z } from "zod";
import { isProxyEntry } from "./forwarding.ts";

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
  /** a request body not received whole within this is refused 408, before the upstream is asked */
  BODY_TIMEOUT_MS: z.coerce.number().int().min(1).default(10_000),
  /** upstream requests one link may have in flight at once on a gateway; beyond, 429 */
  MAX_CONCURRENT_PER_LINK: z.coerce.number().int().min(1).default(8),
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
  PHONEBANK_SECRET: optionalString,
  /** key of the audit trail's IP hashes; must be shared by all gateways to group requests */
  AUDIT_IP_KEY: optionalString,
});

export type GatewayEnv = z.infer<typeof envSchema>;

export const parseGatewayEnv = (env: Record<string, string | undefined>): GatewayEnv =>
  parseEnv(envSchema, env);
