export { createApp, MAX_BATCH_BODY_BYTES, MAX_BODY_BYTES } from "./app.ts";
export {
  AuditKeyMissingError,
  AuditKeyMissingFromFolderError,
  loadAuditSigner,
  TokenServiceAuditTrail,
} from "./audit-trail.ts";
export type {
  AppEnv,
  AuditJournal,
  AuditTrail,
  Principal,
  Repos,
  Role,
  TokenServiceConfig,
  TokenServiceDeps,
} from "./context.ts";
export {
  envSchema as tokenServiceEnvSchema,
  parseEnv,
  parseTokenServiceEnv,
  settingsSchema as tokenServiceSettingsSchema,
  type TokenServiceEnv,
  type TokenServiceSettings,
  tokenServiceEnvShape,
  tokenServiceProductionRules,
  toTokenServiceSettings,
} from "./env.ts";
export { consoleLogger, type Logger, type Problem, type ProblemCode } from "./errors.ts";
export { DEFAULT_MAX_USES, DEFAULT_TTL_SECONDS, MAX_BATCH, MAX_TTL_SECONDS } from "./issuance.ts";
export {
  type KeyChange,
  KeyManager,
  type KeyManagerOptions,
  keyChangeMessage,
  type LinkSigner,
} from "./keys.ts";
export { createTokenServiceMetrics, type TokenServiceMetrics } from "./metrics.ts";
export { createTokenService, type TokenService, type TokenServiceInfra } from "./service.ts";
