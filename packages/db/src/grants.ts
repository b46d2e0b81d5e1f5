import { sql } from "drizzle-orm";
import type { Db } from "./client.ts";
import { MIGRATION_LOCK_ID } from "./migrate.ts";

/**
 * The services' role's privileges, for the role named `phaselock_app`: the README's "Database
 * roles" block after its `CREATE ROLE` line, verbatim (packages/audit/src/roles.test.ts checks
 * that the two, and infra/db/services-role.sql, match, and what the role can do with them).
 */
export const SERVICES_GRANTS_SQL = `-- Nobody but the owner creates objects in public (the default before Postgres 15 let every role,
-- e.g. an overload of audit_append()).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO phaselock_app;
-- every service checks at start that the database is migrated, in drizzle's own table
GRANT USAGE ON SCHEMA drizzle TO phaselock_app;
GRANT SELECT ON drizzle.__drizzle_migrations TO phaselock_app;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints, audit_keys, audit_archives FROM phaselock_app;
-- only \`pnpm audit:archive\` (the owner) writes audit_archives: a row the services' role could add
-- would move where /v1/audit/verify expects the live log to start
REVOKE INSERT ON audit_archives FROM phaselock_app;
-- every column but partition_month: the month a row lands in is always the database clock's (a
-- row put in another month would break retention, and could repeat a seq under the key
-- (seq, partition_month))
REVOKE INSERT ON audit_events FROM phaselock_app;
GRANT INSERT (seq, id, at, type, actor, campaign_id, link_id, decision, reason, data, prev_hash, hash, leaf_hash)
  ON audit_events TO phaselock_app;
-- the month partitions: the services reach them through audit_events only
DO $$ DECLARE p regclass; BEGIN
  FOR p IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'audit_events'::regclass LOOP
    EXECUTE format('REVOKE ALL ON %s FROM phaselock_app', p);
  END LOOP;
END $$;
`;

/** A role name the grants can name unquoted: lowercase, as `CREATE ROLE name` folds it. */
const ROLE_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** {@link SERVICES_GRANTS_SQL} for `role` instead of `phaselock_app`. */
export function servicesGrantsSql(role: string): string {
  if (!ROLE_NAME.test(role)) {
    throw new RangeError(
      `a role name here is lowercase letters, digits and _, not starting with a digit, at most 63: got ${JSON.stringify(role)}`,
    );
  }
  return SERVICES_GRANTS_SQL.replaceAll("phaselock_app", role);
}

/**
 * Gives `role` (which must exist) the services' privileges on every table there is now, in one
 * transaction: run by the tables' owner after each migration, so that a table a migration adds is
 * granted too (`pnpm db:migrate --grant ROLE`; compose's db-roles runs the same block).
 */
export async function grantServicesRole(db: Db, role: string): Promise<void> {
  const text = servicesGrantsSql(role);
  await db.transaction(async (tx) => {
    // Under the migrations' lock: a Deployment's replicas migrating together take turns (two
    // GRANTs on one table at once fail "tuple concurrently updated"), and none grants mid-migration.
    await tx.execute(sql.raw(`select pg_advisory_xact_lock(${MIGRATION_LOCK_ID})`));
    await tx.execute(sql.raw(text));
  });
}
