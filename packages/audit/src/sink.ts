import type { AuditEvent } from "./events.ts";

/**
 * One audit event before it is chained, as the store and the chain see it. Never holds a token,
 * cookie, key or clear IP. Services record an {@link AuditEvent} of the catalogue instead.
 */
export interface AuditEventInput {
  /** an {@link AuditEvent} type: `link.issued`, `access`, `revocation.created` … */
  type: string;
  at: Date;
  /** API key id, "admin", or for gateway events the link id's volunteer ref */
  actor?: string | null;
  campaignId?: string | null;
  linkId?: string | null;
  decision?: "allow" | "deny" | null;
  /** refusal code for denied requests */
  reason?: string | null;
  data?: Record<string, unknown>;
}

/**
 * Where services send audit events. `record` never blocks the request path; a sink that cannot
 * write for longer than its bound reports `healthy() === false` so the caller fails closed.
 */
export interface AuditSink {
  record(event: AuditEvent): void;
  healthy(now: Date): boolean;
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** A sink that keeps events in memory: for unit tests. */
export class MemoryAuditSink implements AuditSink {
  readonly events: AuditEvent[] = [];
  record(event: AuditEvent): void {
    this.events.push(event);
  }
  healthy(): boolean {
    return true;
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}
