import { type AuditSink, BatchAuditWriter, type CheckpointTimers } from "@phaselock/audit";
import {
  type Clock,
  createMetricsRegistry,
  errorText,
  type PinoLogger,
  type Registry,
  randomId,
} from "@phaselock/core";
import { createRepos, type Db } from "@phaselock/db";
import type { BusStatus, ChangeBus } from "@phaselock/state";
import { parseKek } from "@phaselock/tokens";
import { createApp } from "./app.ts";
import { TokenServiceAuditTrail } from "./audit-trail.ts";
import type { AuditJournal, TokenServiceDeps } from "./context.ts";
import { auditedChange, databaseJournal } from "./effects.ts";
import type { TokenServiceSettings } from "./env.ts";
import { consoleLogger, type Logger } from "./errors.ts";
import { KeyManager } from "./keys.ts";
import { createTokenServiceMetrics } from "./metrics.ts";

/** Who records what the token service does by itself at start (its first signing key). */
const STARTING = { actor: "token-service" };

/** The deployment's shared state a token service runs on; the stack shares it with the gateway. */
export interface TokenServiceInfra {
  db: Db;
  stores: { bus: ChangeBus };
  clock: Clock;
  /** Default: a batching writer into the database's hash chain, closed by `stop()`. */
  audit?: AuditSink;
  /** Default: admin and issuance events join the chain inside their change's transaction. */
  journal?: AuditJournal;
  /** The checkpoint timer (default: every 10 s, unref'd). */
  checkpointTimers?: CheckpointTimers;
  logger?: Logger;
  /** Secrets used when the settings leave them unset (never in production: the schema refuses). */
  fallbackSecrets?: { adminToken?: string; keyEncryptionKey?: string };
  /** Where `/metrics` reads from. Default: a registry of this instance's own. */
  metricsRegistry?: Registry;
  /** One JSON line per request. Default: none. */
  requestLogger?: PinoLogger;
}

/**
 * Builds a token service over a database and the change feed: the key manager (its key decrypted
 * with the KEK), the audit writer and the app. `start()` loads or creates the signing key,
 * announces a created one and follows other instances' rotations; `/readyz` reports the feed.
 */
export function createTokenService(settings: TokenServiceSettings, infra: TokenServiceInfra) {
  const { db, clock } = infra;
  const bus = infra.stores.bus;
  const log = infra.logger ?? consoleLogger;
  const adminToken = settings.adminToken ?? infra.fallbackSecrets?.adminToken;
  const kekText = settings.keyEncryptionKey ?? infra.fallbackSecrets?.keyEncryptionKey;
  // Fail closed: there is no safe default for either.
  if (!adminToken) throw new Error("token-service: ADMIN_TOKEN is not set");
  if (!kekText) throw new Error("token-service: KEY_ENCRYPTION_KEY is not set");

  const repos = createRepos(db);
  const kek = parseKek(kekText);
  const keys = new KeyManager({ signingKeys: repos.signingKeys, kek, clock });
  const auditTrail = new TokenServiceAuditTrail({
    db,
    kek,
    origin: settings.auditOrigin,
    clock,
    dir: settings.auditCheckpointDir,
    timers: infra.checkpointTimers,
    onError: (err) => log.error("audit checkpoint", { error: errorText(err) }),
    onNotice: (message) => log.warn(message),
  });
  const ownAudit = infra.audit
    ? undefined
    : new BatchAuditWriter({
        db,
        clock,
        onError: (err) => log.error("audit writer", { error: errorText(err) }),
      });
  const audit = infra.audit ?? (ownAudit as AuditSink);

  // Until the feed says it is connected, a published change may reach no gateway.
  let busUp = false;
  const deps: TokenServiceDeps = {
    db,
    repos,
    keys,
    clock,
    bus,
    audit,
    journal: infra.journal ?? databaseJournal,
    auditTrail,
    config: { issuer: settings.issuer, publicGatewayUrl: settings.publicGatewayUrl, adminToken },
    ready: () => busUp,
    logger: log,
    metrics: createTokenServiceMetrics(infra.metricsRegistry ?? createMetricsRegistry("token-service"), {
      db,
      clock,
      auditPending: () => (audit as { pending?: number }).pending ?? 0,
    }),
    requestLogger: infra.requestLogger,
    metricsToken: settings.metricsToken,
  };
  const app = createApp(deps);
  let unsubscribe: (() => void) | undefined;
  const refreshKeys = (): void => {
    keys
      .refresh()
      .catch((err: unknown) => log.error("signing key refresh failed", { error: errorText(err) }));
  };

  return {
    settings,
    deps,
    app,
    keys,
    audit,
    auditTrail,
    /** Loads (or creates and announces) the signing key and the audit key; returns the signing kid. */
    start: async (): Promise<{ kid: string }> => {
      // The first signing key is a key change like a rotation: its event commits with its row.
      // The active key is read first, on the pool: an embedded database has one connection.
      const ensured = (await keys.refresh())
        ? { kid: keys.signer().kid, created: null }
        : await auditedChange(deps, { principal: STARTING, requestId: randomId("req") }, async (t) => {
            const created = await keys.createKey(t.repos.signingKeys);
            t.record({
              type: "key.rotated",
              data: { kid: created.kid, previousKid: null, version: created.version },
            });
            return { kid: created.kid, created };
          }).catch(async (err: unknown) => {
            // The new key may be held in memory though its row rolled back.
            await keys.refresh().catch(() => false);
            throw err;
          });
      if (ensured.created) await bus.publish({ version: ensured.created.version }).catch(() => {});
      await auditTrail.start();
      // Another instance may rotate: pick up its key, so every instance signs with the active one.
      unsubscribe ??= bus.subscribe({
        // A hint carries no authority: re-read the active key from Postgres (cheap, and a no-op
        // unless another instance rotated or revoked).
        onMessage: () => refreshKeys(),
        onStatus: (status: BusStatus) => {
          if (status === "connected" || status === "heartbeat") busUp = true;
          if (status === "disconnected") busUp = false;
          // Hints may have been lost (a publish that failed, a feed that was down): reload.
          if (status === "connected" || status === "gap") refreshKeys();
        },
      });
      return { kid: ensured.kid };
    },
    /** Stops following the feed and writes the queued audit events (when the writer is its own). */
    stop: async () => {
      unsubscribe?.();
      unsubscribe = undefined;
      await ownAudit?.close();
      await auditTrail.stop();
    },
  };
}

export type TokenService = ReturnType<typeof createTokenService>;
