import type { AuditEvent, AuditSink, StoredCheckpoint } from "@phaselock/audit";
import type { Clock, PinoLogger } from "@phaselock/core";
import type { createRepos, Db } from "@phaselock/db";
import type { ChangeBus } from "@phaselock/state";
import type { KeyManager } from "./keys.ts";
import type { Logger } from "./logger.ts";
import type { TokenServiceMetrics } from "./metrics.ts";

export type Repos = ReturnType<typeof createRepos>;

/**
 * Writes audit events inside the transaction of the change they record, so both commit or
 * neither does. Injectable so tests can fail between the change and its commit.
 */
export interface AuditJournal {
  append(tx: Db, events: readonly AuditEvent[]): Promise<void>;
}

/** The signed side of the audit log: its verifier key and its checkpoints. */
export interface AuditTrail {
  /** The signed-note verifier key (`name+keyid+base64`), or null until the key is loaded. */
  verifierKey(): string | null;
  /** Signs a checkpoint if the log grew since the latest, then returns the latest (null: empty log). */
  checkpoint(): Promise<StoredCheckpoint | null>;
  /** Checkpoints the log signed known from outside the database (its folder), for verify. */
  heldCheckpoints(): Promise<{ treeSize: number; note: string }[]>;
}

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
  /** Events that need no transaction of their own (none today; kept for readiness and tests). */
  audit: AuditSink;
  /** Where admin and issuance events are written, inside the change's transaction. */
  journal: AuditJournal;
  /** Checkpoints and the audit key; set once `start()` has loaded the key. */
  auditTrail: AuditTrail;
  config: TokenServiceConfig;
  /** Extra readiness check for `/readyz`, e.g. the change feed's connection. */
  ready?: () => boolean | Promise<boolean>;
  /** Defaults to JSON lines on the console. */
  logger?: Logger;
  /** behind `/metrics`; absent in hand-built test deps */
  metrics?: TokenServiceMetrics | undefined;
  /** one JSON line per request (pino) */
  requestLogger?: PinoLogger | undefined;
  /** METRICS_TOKEN: the bearer `/metrics` requires, when set */
  metricsToken?: string | undefined;
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
