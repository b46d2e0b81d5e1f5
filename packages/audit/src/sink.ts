import type { AuditEvent } from "./events.ts";

export type { AuditEventInput } from "./event-input.ts";

/**
 * Where services send audit events. `record` never blocks the request path; a sink that cannot
 * write for longer than its bound reports `healthy() === false` so the caller fails closed.
 */
export interface AuditSink {
  record(event: AuditEvent): void;
  /**
   * Records an event and resolves once it is durable (committed), rejecting if it cannot be
   * written: for answers that carry member data, which must not leave before their event.
   */
  recordDurable(event: AuditEvent): Promise<void>;
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
  async recordDurable(event: AuditEvent): Promise<void> {
    this.events.push(event);
  }
  healthy(): boolean {
    return true;
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {}
}
