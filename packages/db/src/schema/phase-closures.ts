import { index, integer, pgTable, text, timestamp } from "drizzle-orm/pg-core";
import { contests } from "./contests.ts";

/**
 * A phase ended before its time (the end route, or a timeline that cut it short). Kept apart from
 * `phases`, which a timeline replacement rewrites: links of the phase issued up to `closedAt`
 * stay dead whatever a later timeline says. Never updated or deleted.
 */
export const phaseClosures = pgTable(
  "phase_closures",
  {
    id: integer("id").primaryKey().generatedAlwaysAsIdentity(),
    // No cascade: a closure must not vanish with its contest row.
    contestId: text("contest_id")
      .notNull()
      .references(() => contests.id),
    phase: text("phase").notNull(),
    closedAt: timestamp("closed_at", { withTimezone: true }).notNull(),
    reason: text("reason").notNull(),
    /** API key id or "admin". */
    actor: text("actor").notNull(),
  },
  (t) => [index("phase_closures_phase_idx").on(t.contestId, t.phase)],
);
