import { sql } from "drizzle-orm";
import {
  bigint,
  date,
  index,
  jsonb,
  pgTable,
  primaryKey,
  text,
  timestamp,
  unique,
} from "drizzle-orm/pg-core";

/**
 * The tamper-evident audit trail. `hash = sha256(prevHash || canonical(event))`; `seq` orders
 * the chain. Never holds a token, cookie or clear IP.
 *
 * Partitioned by month (migration 0009, written by hand: drizzle-kit does not model partitions)
 * on `partition_month`, the month in which the row was appended (see docs/audit.md "Partitions
 * and retention"); the primary key and the id's unique constraint include it, as Postgres
 * requires of a partitioned table.
 */
export const auditEvents = pgTable(
  "audit_events",
  {
    seq: bigint("seq", { mode: "number" }).notNull(),
    id: text("id").notNull(),
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
    /**
     * First day of the month the row was appended in (UTC, by the database clock read under the
     * append lock, so it never decreases along seq): the partition key. Not part of the event.
     */
    partitionMonth: date("partition_month", { mode: "string" })
      .notNull()
      .default(sql`((date_trunc('month', clock_timestamp() at time zone 'UTC'))::date)`),
  },
  (t) => [
    primaryKey({ name: "audit_events_pkey", columns: [t.seq, t.partitionMonth] }),
    unique("audit_events_id_unique").on(t.id, t.partitionMonth),
    index("audit_campaign_idx").on(t.campaignId, t.seq),
    index("audit_link_idx").on(t.linkId, t.seq),
    index("audit_at_idx").on(t.at),
  ],
);
