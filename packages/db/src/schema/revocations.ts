import { index, pgTable, text, timestamp } from "drizzle-orm/pg-core";

/**
 * A revocation. Every scope but `link` is a watermark: it covers matching links whose `iat`
 * second is at or before `effectiveAt`, so later links still work and memory grows with the
 * number of revocations, not of links.
 */
export const revocations = pgTable(
  "revocations",
  {
    id: text("id").primaryKey(),
    scope: text("scope", { enum: ["link", "volunteer", "campaign", "phase", "contest", "all"] }).notNull(),
    linkId: text("link_id"),
    volunteerRef: text("volunteer_ref"),
    campaignId: text("campaign_id"),
    contestId: text("contest_id"),
    phase: text("phase"),
    reason: text("reason").notNull(),
    /** API key id or "admin". */
    actor: text("actor").notNull(),
    effectiveAt: timestamp("effective_at", { withTimezone: true }).notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    index("revocations_created_idx").on(t.createdAt, t.id),
    // Link status: `link` revocations by link id, each watermark scope by what it names, so a
    // link's check reads only the watermarks that could cover it (there may be thousands).
    index("revocations_scope_link_idx").on(t.scope, t.linkId),
    index("revocations_scope_contest_idx").on(t.scope, t.contestId, t.phase),
    index("revocations_scope_campaign_idx").on(t.scope, t.campaignId),
    index("revocations_scope_volunteer_idx").on(t.scope, t.volunteerRef),
  ],
);
