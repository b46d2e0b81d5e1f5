import { optionalHttpUrl, parseEnv, port } from "@phaselock/core";
import {
  type GatewayServiceConfig,
  gatewayEnvShape,
  gatewayProductionRules,
  toGatewayConfig,
} from "@phaselock/gateway";
import {
  type TokenServiceSettings,
  tokenServiceEnvShape,
  tokenServiceProductionRules,
  toTokenServiceSettings,
} from "@phaselock/token-service";
import type { z } from "zod";

/**
 * `pnpm start`: the services' own variables (their schemas, not copies, so a setting means the
 * same here as to a service alone) and the stack's: the phone bank's port, and an upstream that
 * follows it unless set.
 */
export const stackEnvShape = tokenServiceEnvShape.extend(gatewayEnvShape.shape).extend({
  PHONEBANK_PORT: port(8090),
  // The gateway's rule without its default, which would hide the phone bank's port.
  UPSTREAM_URL: optionalHttpUrl,
});

export interface StackConfig {
  production: boolean;
  host: string;
  dataDir: string;
  databaseUrl: string | undefined;
  redisUrl: string | undefined;
  redisPrefix: string;
  phonebankPort: number;
  tokenService: TokenServiceSettings;
  gateway: GatewayServiceConfig;
}

export const envSchema = stackEnvShape
  .superRefine((env, ctx) => {
    tokenServiceProductionRules(env, ctx);
    gatewayProductionRules({ ...env, UPSTREAM_URL: upstreamOf(env) }, ctx);
  })
  .transform(
    (env): StackConfig => ({
      production: env.NODE_ENV === "production",
      host: env.HOST,
      dataDir: env.DATA_DIR,
      databaseUrl: env.DATABASE_URL,
      redisUrl: env.REDIS_URL,
      redisPrefix: env.REDIS_PREFIX,
      phonebankPort: env.PHONEBANK_PORT,
      tokenService: toTokenServiceSettings(env),
      gateway: toGatewayConfig({ ...env, UPSTREAM_URL: upstreamOf(env) }),
    }),
  );

function upstreamOf(env: { UPSTREAM_URL?: string | undefined; PHONEBANK_PORT: number }): string {
  return env.UPSTREAM_URL ?? `http://127.0.0.1:${env.PHONEBANK_PORT}`;
}

export type StackEnv = z.infer<typeof stackEnvShape>;
export const parseStackEnv = (env: Record<string, string | undefined>): StackConfig =>
  parseEnv(envSchema, env);
