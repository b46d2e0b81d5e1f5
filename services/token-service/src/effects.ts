import type { AuditEvent } from "@phaselock/audit";
import type { PolicyChange } from "@phaselock/state";
import type { Context } from "hono";
import type { AppEnv, TokenServiceDeps } from "./context.ts";
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

/** Records an audit event stamped with the service clock, the caller and its request id. */
export function recordAudit(
  deps: Pick<TokenServiceDeps, "audit" | "clock">,
  caller: AuditCaller,
  event: AuditDraft,
): void {
  deps.audit.record({
    ...event,
    at: deps.clock.now(),
    actor: event.actor ?? caller.principal?.actor ?? null,
    data: { requestId: caller.requestId, ...event.data },
  } as AuditEvent);
}

/** {@link recordAudit} for the request `c` is answering. */
export const audit = (c: Context<AppEnv>, event: AuditDraft): void => recordAudit(c.var.deps, c.var, event);
