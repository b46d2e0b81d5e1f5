import { pgTable, text, timestamp } from "drizzle-orm/pg-core";

/**
 * Secrets every gateway must share and none is configured with (the device-id MAC key): the
 * first gateway inserts a random value, every other one reads it back.
 */
export const gatewaySecrets = pgTable("gateway_secrets", {
  name: text("name").primaryKey(),
  value: text("value").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});
