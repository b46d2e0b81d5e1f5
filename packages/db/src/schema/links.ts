import { index, integer, pgTable, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";

/** Every issued link. The token itself is never stored: it can be re-derived only by signing again. */
export const links = pgTable(
  "links",
  {
    id: text("id").primaryKey(),
    campaignId: text("campaign_id").notNull(),
    contestId: text("contest_id").notNull(),
    phase: text("phase").notNull(),
    volunteerRef: text("volunteer_ref").notNull(),
    volunteerName: text("volunteer_name"),
    scopes: text("scopes").array().notNull(),
    notBefore: timestamp("not_before", { withTimezone: true }).notNull(),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    maxUses: integer("max_uses").notNull(),
    uses: integer("uses").notNull().default(0),
    /** API key id, or "admin" for ADMIN_TOKEN. */
    issuedBy: text("issued_by").notNull(),
    /** When it was issued, to the millisecond (orders lists); the token's `iat` is its second. */
    issuedAt: timestamp("issued_at", { withTimezone: true }).notNull(),
    kid: text("kid").notNull(),
    lastSeenAt: timestamp("last_seen_at", { withTimezone: true }),
    /** Set when the link is suspended automatically (e.g. redeemed from too many devices). */
    suspendedAt: timestamp("suspended_at", { withTimezone: true }),
    suspendedReason: text("suspended_reason"),
    /** sha256 of the short link's code (`/l/<code>`); the code itself is never stored */
    codeHash: text("code_hash"),
  },
  (t) => [
    // Lists are newest first by (issued_at, id), with or without a campaign filter.
    index("links_issued_idx").on(t.issuedAt, t.id),
    index("links_campaign_issued_idx").on(t.campaignId, t.issuedAt, t.id),
    index("links_volunteer_idx").on(t.campaignId, t.volunteerRef),
    uniqueIndex("links_code_hash_idx").on(t.codeHash),
  ],
);
