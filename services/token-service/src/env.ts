import {
  dataDir,
  dbStallTimeoutMs,
  type LogLevel,
  listenHost,
  logLevel,
  metricsToken,
  nodeEnv,
  optionalHttpUrl,
  optionalString,
  parseEnv as parseWith,
  port,
  postgresUrl,
  publicGatewayUrl,
  redisPrefix,
  redisUrl,
  tokenServiceUrl,
} from "@phaselock/core";
import { parseKek } from "@phaselock/tokens";
import { z } from "zod";

const isKek = (value: string): boolean => {
  try {
    parseKek(value);
    return true;
  } catch {
    return false;
  }
};

/** The token service's variables; `pnpm start` extends this shape rather than copying it. */
export const tokenServiceEnvShape = z.object({
  NODE_ENV: nodeEnv,
  TOKEN_SERVICE_PORT: port(4000),
  HOST: listenHost,
  DATABASE_URL: postgresUrl,
  DB_STALL_TIMEOUT_MS: dbStallTimeoutMs,
  DATA_DIR: dataDir,
  REDIS_URL: redisUrl,
  REDIS_PREFIX: redisPrefix,
  ADMIN_TOKEN: optionalString.pipe(
    z
      .string()
      .min(32, "must be at least 32 characters")
      .max(1024, "must be at most 1024 characters")
      .regex(/^[\x21-\x7e]+$/, "must be printable ASCII without spaces")
      .optional(),
  ),
  // Checked here, before any database is opened or migrated, not when the first key is read.
  KEY_ENCRYPTION_KEY: optionalString.pipe(
    z
      .string()
      .refine(isKek, "must be 32 bytes: 64 hex characters, or 43/44 base64(url) characters")
      .optional(),
  ),
  /** unset: derived from GATEWAY_PORT and HOST, see `publicGatewayUrl` */
  PUBLIC_GATEWAY_URL: optionalHttpUrl,
  /** read only for that default: the token service does not talk to the gateway */
  GATEWAY_PORT: port(8080),
  /** unset: derived from TOKEN_SERVICE_PORT and HOST, see `tokenServiceUrl` */
  TOKEN_SERVICE_URL: optionalHttpUrl,
  /** unset: `<DATA_DIR>/checkpoints` (the contract's `./.data/checkpoints` by default), see `checkpointDirOf` */
  AUDIT_CHECKPOINT_DIR: optionalString,
  AUDIT_ORIGIN: optionalString.pipe(
    z
      .string()
      .regex(/^[\x21-\x2a\x2c-\x7e]{1,200}$/, "must be printable ASCII without spaces or '+'")
      .optional(),
  ),
  METRICS_TOKEN: metricsToken,
  LOG_LEVEL: logLevel,
});

export type TokenServiceEnv = z.infer<typeof tokenServiceEnvShape>;

/** What a token service is built from: every setting of the README's table that it reads. */
export interface TokenServiceSettings {
  production: boolean;
  host: string;
  port: number;
  databaseUrl: string | undefined;
  /** `DB_STALL_TIMEOUT_MS`: the stall watch's deadline (0: off; unset: its default) */
  dbStallTimeoutMs: number | undefined;
  dataDir: string;
  redisUrl: string | undefined;
  /** `REDIS_PREFIX`: every Redis key and channel starts with `<redisPrefix>:` */
  redisPrefix: string;
  /** This service's public URL: the `iss` of every token. */
  issuer: string;
  /** Base of the link URLs handed out. */
  publicGatewayUrl: string;
  /** unset outside production: the starter supplies a development token */
  adminToken: string | undefined;
  /** unset outside production: the starter supplies a development key */
  keyEncryptionKey: string | undefined;
  /** Where every signed audit checkpoint is also written. */
  auditCheckpointDir: string;
  /** The audit log's name (checkpoint origin and key name): `<TOKEN_SERVICE_URL host>/audit` by default. */
  auditOrigin: string;
  /** `METRICS_TOKEN`: the bearer `GET /metrics` requires, when set */
  metricsToken: string | undefined;
  logLevel: LogLevel;
}

const PRODUCTION_SECRETS = {
  KEY_ENCRYPTION_KEY: "32 bytes: 64 hex characters or base64",
  ADMIN_TOKEN: "at least 32 characters",
} as const;

/** Production never falls back on a generated secret kept in a file beside the database. */
export function tokenServiceProductionRules(env: TokenServiceEnv, ctx: z.RefinementCtx): void {
  if (env.NODE_ENV !== "production") return;
  for (const [name, what] of Object.entries(PRODUCTION_SECRETS)) {
    if (env[name as keyof typeof PRODUCTION_SECRETS] === undefined) {
      ctx.addIssue({
        code: "custom",
        path: [name],
        message: `is required when NODE_ENV=production (${what})`,
      });
    }
  }
}

export const toTokenServiceSettings = (env: TokenServiceEnv): TokenServiceSettings => {
  const issuer = tokenServiceUrl(env);
  return {
    production: env.NODE_ENV === "production",
    host: env.HOST,
    port: env.TOKEN_SERVICE_PORT,
    databaseUrl: env.DATABASE_URL,
    dbStallTimeoutMs: env.DB_STALL_TIMEOUT_MS,
    dataDir: env.DATA_DIR,
    redisUrl: env.REDIS_URL,
    redisPrefix: env.REDIS_PREFIX,
    issuer,
    publicGatewayUrl: publicGatewayUrl(env),
    adminToken: env.ADMIN_TOKEN,
    keyEncryptionKey: env.KEY_ENCRYPTION_KEY,
    auditCheckpointDir: env.AUDIT_CHECKPOINT_DIR ?? checkpointDirOf(env.DATA_DIR),
    auditOrigin: env.AUDIT_ORIGIN ?? defaultAuditOrigin(issuer),
    metricsToken: env.METRICS_TOKEN,
    logLevel: env.LOG_LEVEL,
  };
};

/**
 * The checkpoint folder when AUDIT_CHECKPOINT_DIR is unset: inside DATA_DIR, so a second data
 * folder (another embedded database, a test's) never shares one with the first — notes of two logs
 * in one folder collide by size and each refuses the other's as a fork — and `pnpm db:restore`
 * restores the two together. With the default DATA_DIR it is the contract's `./.data/checkpoints`.
 */
export const checkpointDirOf = (dataDir: string): string =>
  `${dataDir.replace(/\/+$/, "") || "/"}/checkpoints`;

/** `<host>/audit`, the C2SP convention of naming a log by where it lives. */
export const defaultAuditOrigin = (serviceUrl: string): string => `${new URL(serviceUrl).host}/audit`;

/** The token service's environment, parsed once by `main.ts`, without the production rules. */
export const envSchema = tokenServiceEnvShape;

/** The environment as the service runs it: production rules applied, into its settings. */
export const settingsSchema = tokenServiceEnvShape
  .superRefine(tokenServiceProductionRules)
  .transform(toTokenServiceSettings);

/**
 * Parses the environment or throws one readable error naming every bad variable (never its value:
 * some of them are secrets).
 */
export const parseEnv = (env: Record<string, string | undefined>): TokenServiceEnv =>
  parseWith(envSchema, env);

export const parseTokenServiceEnv = (env: Record<string, string | undefined>): TokenServiceSettings =>
  parseWith(settingsSchema, env);
