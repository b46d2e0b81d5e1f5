import type { AuditEvent } from "./events.ts";

export type { AuditEventInput } from "./event-input.ts";

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
