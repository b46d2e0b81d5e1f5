import { type AuditEvent, appendInTransaction } from "@phaselock/audit";
import { createRepos, type Tx } from "@phaselock/db";
import type { PolicyChange } from "@phaselock/state";
import type { Context } from "hono";
import type { AppEnv, AuditJournal, Repos, TokenServiceDeps } from "./context.ts";
import { consoleLogger } from "./errors.ts";

// A hung feed must not hold a committed write's response: gateways catch up on gap or heartbeat.
const PUBLISH_TIMEOUT_MS = 2000;

/**
 * Announces a committed policy write on the change feed with the version its transaction
 * produced. Called after the commit; a failure is logged, never surfaced, since the write stands
 * and gateways reload when they notice the gap or miss a heartbeat.
 */
export async function publishChange(
  deps: TokenServiceDeps,
  version: number,
  change: PolicyChange,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      // Only the version travels: gateways read the change itself from the Postgres log.
      deps.bus.publish({ version }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`publish timed out after ${PUBLISH_TIMEOUT_MS} ms`)),
          PUBLISH_TIMEOUT_MS,
        );
        timer.unref();
      }),
    ]);
  } catch (err) {
    (deps.logger ?? consoleLogger).warn("policy change not published; gateways will reload", {
      version,
      change: change.type,
      error: err instanceof Error ? err.message : String(err),
    });
  } finally {
    clearTimeout(timer);
  }
}

/** An event of the catalogue without what {@link audit} stamps on it. */
export type AuditDraft = AuditEvent extends infer E
  ? E extends AuditEvent
    ? Omit<E, "at" | "actor"> & { actor?: string }
    : never
  : never;

/** Who an event is recorded for: the caller's actor (when authenticated) and its request. */
export interface AuditCaller {
  principal?: { actor: string } | undefined;
  requestId: string;
}

/** The production journal: the events join the database's chain (and tree) in `tx`. */
export const databaseJournal: AuditJournal = {
  append: async (tx, events) => {
    if (events.length > 0) await appendInTransaction(tx, events);
  },
};

/** An event stamped with the service clock, the caller and its request id. */
export function stampAudit(
  deps: Pick<TokenServiceDeps, "clock">,
  caller: AuditCaller,
  event: AuditDraft,
): AuditEvent {
  return {
    ...event,
    at: deps.clock.now(),
    actor: event.actor ?? caller.principal?.actor ?? null,
    data: { requestId: caller.requestId, ...event.data },
  } as AuditEvent;
}

/** What an audited change works with: the transaction, repositories inside it, and `record`. */
export interface AuditedTx {
  tx: Tx;
  repos: Repos;
  /** Queues an event; it is written as the transaction's last statement, before the commit. */
  record(event: AuditDraft): void;
  /**
   * Work already running that the commit waits for, after the events are written: if it fails,
   * the change and its events roll back. For work the events do not depend on (a batch's
   * signatures), so that it runs alongside the append instead of ahead of it.
   */
  beforeCommit(work: Promise<unknown>): void;
}

/**
 * Runs a change and the audit events it records in one transaction: a crash or a failure at any
 * point leaves both or neither. The events go last, so the chain lock is held only to the commit
 * (and for as long as work passed to `beforeCommit` outlasts the append).
 */
export function auditedChange<T>(
  deps: Pick<TokenServiceDeps, "db" | "clock" | "journal">,
  caller: AuditCaller,
  fn: (t: AuditedTx) => Promise<T>,
): Promise<T> {
  return deps.db.transaction(
    async (tx) => {
      const events: AuditEvent[] = [];
      const pending: Promise<unknown>[] = [];
      const result = await fn({
        tx,
        repos: createRepos(tx),
        record: (event) => void events.push(stampAudit(deps, caller, event)),
        beforeCommit: (work) => {
          // Observed at once: a change that fails first leaves no unhandled rejection behind.
          work.catch(() => {});
          pending.push(work);
        },
      });
      await deps.journal.append(tx, events);
      await Promise.all(pending);
      return result;
    },
    // Whatever the session's default (`default_transaction_isolation`): the audit append reads
    // the chain's head after its lock, which only READ COMMITTED sees (it refuses any other).
    { isolationLevel: "read committed" },
  );
}

/** {@link auditedChange} for the request `c` is answering. */
export const audited = <T>(c: Context<AppEnv>, fn: (t: AuditedTx) => Promise<T>): Promise<T> =>
  auditedChange(c.var.deps, c.var, fn);
