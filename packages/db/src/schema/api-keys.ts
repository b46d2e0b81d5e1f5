import { index, pgTable, text, timestamp } from "drizzle-orm/pg-core";
import { campaigns } from "./campaigns.ts";

/** API keys: only a SHA-256 of the secret is stored; the secret is shown once. */
export const apiKeys = pgTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    role: text("role", { enum: ["admin", "coordinator", "auditor"] }).notNull(),
    campaignId: text("campaign_id").references(() => campaigns.id),
    label: text("label"),
    keyHash: text("key_hash").notNull().unique(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    deletedAt: timestamp("deleted_at", { withTimezone: true }),
    /** When the key last authenticated a request; written at most once a minute per key. */
    lastUsedAt: timestamp("last_used_at", { withTimezone: true }),
  },
  (t) => [index("api_keys_campaign_idx").on(t.campaignId)],
);
