import { bigint, jsonb, pgTable, timestamp } from "drizzle-orm/pg-core";

/**
 * The policy change log: one row per `policy_state.version`, written in the transaction that
 * bumped it. Gateways catch up from here (`version > mine`), never from the change feed, whose
 * messages are only hints to read sooner. `change` is a `PolicyChange` (`@phaselock/state`),
 * validated by its one schema when read; an unreadable row makes the reader reload in full.
 */
export const policyChanges = pgTable("policy_changes", {
  version: bigint("version", { mode: "number" }).primaryKey(),
  change: jsonb("change").notNull().$type<StoredPolicyChange>(),
  at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
});

/** A change as stored: JSON, dates as ISO-8601 strings. */
export type StoredPolicyChange = { type: string } & Record<string, unknown>;
