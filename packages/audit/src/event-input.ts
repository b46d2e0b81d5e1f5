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
