import { bigint, index, jsonb, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/**
 * The tamper-evident audit trail. `hash = sha256(prevHash || canonical(event))`; `seq` orders
 * the chain. Never holds a token, cookie or clear IP.
 */
export const auditEvents = pgTable(
  "audit_events",
  {
    seq: bigint("seq", { mode: "number" }).primaryKey(),
    id: text("id").notNull().unique(),
    at: timestamp("at", { withTimezone: true, precision: 3 }).notNull(),
    type: text("type").notNull(),
    actor: text("actor"),
    campaignId: text("campaign_id"),
    linkId: text("link_id"),
    decision: text("decision", { enum: ["allow", "deny"] }),
    reason: text("reason"),
    data: jsonb("data").notNull().$type<Record<string, unknown>>(),
    prevHash: text("prev_hash").notNull(),
    hash: text("hash").notNull(),
    /**
     * RFC 9162 leaf hash (hex) of the event's canonical bytes, computed at append, so proofs and
     * checkpoints read 32 bytes per event instead of whole rows.
     */
    leafHash: text("leaf_hash").notNull(),
  },
  (t) => [
    index("audit_campaign_idx").on(t.campaignId, t.seq),
    index("audit_link_idx").on(t.linkId, t.seq),
    index("audit_at_idx").on(t.at),
  ],
);
