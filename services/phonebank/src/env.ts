import {
  DEV_PHONEBANK_SECRET,
  listenHost,
  logLevel,
  metricsToken,
  nodeEnv,
  parseEnv,
  phonebankSecret,
  port,
  postgresUrl,
  productionPhonebankSecret,
} from "@phaselock/core";
import { z } from "zod";

/** The phone bank's environment, parsed once by `main.ts`. */
export { DEV_PHONEBANK_SECRET };

export const envSchema = z
  .object({
    NODE_ENV: nodeEnv,
    PHONEBANK_PORT: port(8090),
    HOST: listenHost,
    /** the phone bank keeps nothing in it: set, it is only checked to be migrated at start */
    DATABASE_URL: postgresUrl,
    PHONEBANK_SECRET: phonebankSecret,
    METRICS_TOKEN: metricsToken,
    LOG_LEVEL: logLevel,
  })
  .superRefine((env, ctx) => {
    if (env.NODE_ENV === "production") productionPhonebankSecret(env.PHONEBANK_SECRET, ctx);
  })
  .transform((env) => ({
    nodeEnv: env.NODE_ENV,
    port: env.PHONEBANK_PORT,
    host: env.HOST,
    databaseUrl: env.DATABASE_URL,
    secret: env.PHONEBANK_SECRET ?? DEV_PHONEBANK_SECRET,
    usingDevSecret: env.PHONEBANK_SECRET === undefined,
    metricsToken: env.METRICS_TOKEN,
    logLevel: env.LOG_LEVEL,
  }));

export type PhonebankEnvConfig = z.infer<typeof envSchema>;

export const parsePhonebankEnv = (env: Record<string, string | undefined>): PhonebankEnvConfig =>
  parseEnv(envSchema, env);
