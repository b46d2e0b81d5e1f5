import type { Db } from "@phaselock/db";
import { sql } from "drizzle-orm";

// For tests that play an attacker who owns the database: the append-only triggers on
// audit_events refuse UPDATE and DELETE, and such an attacker would simply switch them off.

/**
 * Runs `fn` in a transaction in which no ordinary trigger fires (`session_replication_role =
 * replica`, which needs a superuser, as the test databases have), then commits what it did.
 */
export async function asDatabaseOwner<T>(db: Db, fn: (tx: Db) => Promise<T>): Promise<T> {
  return db.transaction(async (tx) => {
    await disableAuditTriggers(tx);
    return fn(tx);
  });
}

/** Switches the triggers off for the rest of the current transaction only. */
export async function disableAuditTriggers(tx: Db): Promise<void> {
  await tx.execute(sql`set local session_replication_role = replica`);
}
