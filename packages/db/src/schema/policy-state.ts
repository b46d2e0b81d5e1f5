import { sql } from "drizzle-orm";
import { bigint, check, integer, pgTable } from "drizzle-orm/pg-core";

/**
 * One row: the version of the policy state (timelines, entitlements, revocations, keys).
 * Every policy write bumps it in the same transaction, and the change feed carries it, so a
 * gateway can tell when it has missed a message.
 */
export const policyState = pgTable(
  "policy_state",
  {
    id: integer("id").primaryKey().default(1),
    version: bigint("version", { mode: "number" }).notNull().default(0),
  },
  (t) => [check("policy_state_single_row", sql`${t.id} = 1`)],
);
