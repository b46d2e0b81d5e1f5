import { index, pgTable, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";

/**
 * Volunteers' sessions, opened by redeeming a link. Only `sha256(credential)` is kept: a reader
 * of the database learns nothing that opens a session. The link row holds every claim, so a
 * session is re-checked against its link on every request.
 */
export const sessions = pgTable(
  "sessions",
  {
    id: text("id").primaryKey(),
    tokenHash: text("token_hash").notNull(),
    linkId: text("link_id").notNull(),
    /** the gateway-issued device id the session was opened on */
    deviceId: text("device_id").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull(),
    /** min(created + SESSION_TTL_SECONDS, the link's exp) */
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    endedAt: timestamp("ended_at", { withTimezone: true }),
    endedReason: text("ended_reason"),
  },
  (t) => [
    uniqueIndex("sessions_token_hash_idx").on(t.tokenHash),
    // A device re-opening its link continues its live session: looked up by (link, device).
    index("sessions_link_device_idx").on(t.linkId, t.deviceId),
  ],
);
