import { integer, pgTable, text, timestamp } from "drizzle-orm/pg-core";
import { contests } from "./contests.ts";

export const campaigns = pgTable("campaigns", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  contestId: text("contest_id")
    .notNull()
    .references(() => contests.id),
  /** Per-link limits; null means the service default. */
  requestsPerMinute: integer("requests_per_minute"),
  recordsPerHour: integer("records_per_hour"),
  /** Whom volunteers should ask (display text, shown on refusal pages); null: none given. */
  contact: text("contact"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
});
