import { pgTable, primaryKey, text, timestamp } from "drizzle-orm/pg-core";
import { campaigns } from "./campaigns.ts";

/** What a campaign may reach during one phase of its contest. */
export const entitlements = pgTable(
  "entitlements",
  {
    campaignId: text("campaign_id")
      .notNull()
      .references(() => campaigns.id, { onDelete: "cascade" }),
    phase: text("phase").notNull(),
    scopes: text("scopes").array().notNull(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.campaignId, t.phase] })],
);
