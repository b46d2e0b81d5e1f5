-- The services' database role for infra/compose.yaml, run by its one-shot db-roles service after
-- every migration (so a table a migration adds is granted too). Everything after the role itself is
-- the README's "Database roles" block, verbatim (packages/audit/src/roles.test.ts checks they
-- match). The password comes from the environment, never from this file or a command line.
\set ON_ERROR_STOP on
\getenv app_password POSTGRES_APP_PASSWORD
SELECT 'CREATE ROLE phaselock_app LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'phaselock_app') \gexec
ALTER ROLE phaselock_app LOGIN PASSWORD :'app_password';
-- Nobody but the owner creates objects in public (the default before Postgres 15 let every role,
-- e.g. an overload of audit_append()).
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO phaselock_app;
-- every service checks at start that the database is migrated, in drizzle's own table
GRANT USAGE ON SCHEMA drizzle TO phaselock_app;
GRANT SELECT ON drizzle.__drizzle_migrations TO phaselock_app;
REVOKE UPDATE, DELETE, TRUNCATE ON audit_events, audit_checkpoints, audit_keys, audit_archives FROM phaselock_app;
-- only `pnpm audit:archive` (the owner) writes audit_archives: a row the services' role could add
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
