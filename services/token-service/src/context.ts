import type { AuditSink } from "@phaselock/audit";
import type { Clock } from "@phaselock/core";
import type { createRepos, Db } from "@phaselock/db";
import type { ChangeBus } from "@phaselock/state";
import type { KeyManager } from "./keys.ts";
import type { Logger } from "./logger.ts";

export type Repos = ReturnType<typeof createRepos>;

export interface TokenServiceConfig {
  /** This service's public URL: the `iss` of every token. */
  issuer: string;
  /** Base of the link URLs handed out (`<publicGatewayUrl>/l/<token>`). */
  publicGatewayUrl: string;
  /** Bearer secret with the admin role, at least 32 characters. */
  adminToken: string;
}

/** Everything `createApp` needs; `main.ts` builds the real ones, tests the in-memory ones. */
export interface TokenServiceDeps {
  db: Db;
  repos: Repos;
  keys: KeyManager;
  clock: Clock;
  bus: ChangeBus;
  audit: AuditSink;
  config: TokenServiceConfig;
  /** Extra readiness check for `/readyz`, e.g. the change feed's connection. */
  ready?: () => boolean | Promise<boolean>;
  /** Defaults to JSON lines on the console. */
  logger?: Logger;
}

export type Role = "admin" | "coordinator" | "auditor";

/** Who is calling, as established by the `auth` middleware. */
export type Principal =
  | { role: "admin"; actor: string; campaignId: null }
  | { role: "coordinator"; actor: string; campaignId: string }
  | { role: "auditor"; actor: string; campaignId: null };

export interface AppEnv {
  Variables: {
    deps: TokenServiceDeps;
    requestId: string;
    principal: Principal;
  };
}
