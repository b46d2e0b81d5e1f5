import { httpUrl, nodeEnv, optionalString, parseEnv, port, postgresUrl, redisUrl } from "@phaselock/core";
import { z } from "zod";

/** `pnpm start`: every variable of the three services, parsed once. */
export const envSchema = z.object({
  NODE_ENV: nodeEnv,
  HOST: z.string().min(1).default("127.0.0.1"),
  TOKEN_SERVICE_PORT: port(4000),
  GATEWAY_PORT: port(8080),
  PHONEBANK_PORT: port(8090),
  UPSTREAM_URL: optionalString,
  PUBLIC_GATEWAY_URL: httpUrl("http://127.0.0.1:8080"),
  TOKEN_SERVICE_URL: httpUrl("http://127.0.0.1:4000"),
  DATABASE_URL: postgresUrl,
  DATA_DIR: z.string().min(1).default("./.data"),
  REDIS_URL: redisUrl,
  ADMIN_TOKEN: optionalString.pipe(z.string().min(32, "must be at least 32 characters").optional()),
  KEY_ENCRYPTION_KEY: optionalString,
  PHONEBANK_SECRET: optionalString,
  AUDIT_IP_KEY: optionalString,
  STALE_AFTER_MS: z.coerce.number().int().min(100).default(5000),
  SESSION_TTL_SECONDS: z.coerce.number().int().min(60).default(43_200),
});

export type StackEnv = z.infer<typeof envSchema>;
export const parseStackEnv = (env: Record<string, string | undefined>): StackEnv => parseEnv(envSchema, env);
