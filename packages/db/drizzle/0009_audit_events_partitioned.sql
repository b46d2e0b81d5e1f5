-- audit_events partitioned by month (written by hand; drizzle-kit generated only the column and
-- key changes, and its snapshot records the end state). The partition key is `partition_month`,
-- the first day of the month the row was APPENDED in, by the database clock read while the
-- append lock is held: it never decreases along seq, so every partition holds one contiguous
-- stretch of the log and a retired month is a prefix of the tree (docs/audit.md, "Partitions and
-- retention"). Rows keep their seq, ids, hashes and order; the append-only triggers are
-- re-created on the partitioned table (row triggers reach every partition; TRUNCATE triggers are
-- per table, so each partition gets its own).
ALTER TABLE "audit_events" RENAME TO "audit_events_unpartitioned";
--> statement-breakpoint
ALTER TABLE "audit_events_unpartitioned" RENAME CONSTRAINT "audit_events_pkey" TO "audit_events_unpartitioned_pkey";
--> statement-breakpoint
ALTER TABLE "audit_events_unpartitioned" RENAME CONSTRAINT "audit_events_id_unique" TO "audit_events_unpartitioned_id_unique";
--> statement-breakpoint
ALTER INDEX "audit_campaign_idx" RENAME TO "audit_unpartitioned_campaign_idx";
--> statement-breakpoint
ALTER INDEX "audit_link_idx" RENAME TO "audit_unpartitioned_link_idx";
--> statement-breakpoint
ALTER INDEX "audit_at_idx" RENAME TO "audit_unpartitioned_at_idx";
--> statement-breakpoint
CREATE TABLE "audit_events" (
	"seq" bigint NOT NULL,
	"id" text NOT NULL,
	"at" timestamp (3) with time zone NOT NULL,
	"type" text NOT NULL,
	"actor" text,
	"campaign_id" text,
	"link_id" text,
	"decision" text,
	"reason" text,
	"data" jsonb NOT NULL,
	"prev_hash" text NOT NULL,
	"hash" text NOT NULL,
	"leaf_hash" text NOT NULL,
	"partition_month" date DEFAULT ((date_trunc('month', clock_timestamp() at time zone 'UTC'))::date) NOT NULL,
	CONSTRAINT "audit_events_pkey" PRIMARY KEY("seq","partition_month"),
	CONSTRAINT "audit_events_id_unique" UNIQUE("id","partition_month"),
	CONSTRAINT "audit_events_month_is_first_day" CHECK ("partition_month" = (date_trunc('month', "partition_month"))::date)
) PARTITION BY RANGE ("partition_month");
--> statement-breakpoint
CREATE INDEX "audit_campaign_idx" ON "audit_events" USING btree ("campaign_id","seq");
--> statement-breakpoint
CREATE INDEX "audit_link_idx" ON "audit_events" USING btree ("link_id","seq");
--> statement-breakpoint
CREATE INDEX "audit_at_idx" ON "audit_events" USING btree ("at");
--> statement-breakpoint
-- Whatever the old table granted (e.g. INSERT, SELECT to the services' role), the new one grants.
DO $$
DECLARE
  g record;
BEGIN
  FOR g IN SELECT a.privilege_type, a.grantee::regrole::text AS grantee
             FROM pg_class c, aclexplode(c.relacl) a
            WHERE c.oid = 'audit_events_unpartitioned'::regclass AND a.grantee <> 0 AND a.grantee <> c.relowner LOOP
    EXECUTE format('GRANT %s ON audit_events TO %s', g.privilege_type, g.grantee);
  END LOOP;
END;
$$;
--> statement-breakpoint
CREATE TRIGGER "audit_events_no_update_delete"
  BEFORE UPDATE OR DELETE ON "audit_events"
  FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_rewrite();
--> statement-breakpoint
CREATE TRIGGER "audit_events_no_truncate"
  BEFORE TRUNCATE ON "audit_events"
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_rewrite();
--> statement-breakpoint
-- One month's partition (`audit_events_YYYY_MM`), with its own TRUNCATE trigger; idempotent.
CREATE FUNCTION audit_events_partition(m date) RETURNS boolean LANGUAGE plpgsql
  SET search_path = public, pg_temp AS $$
DECLARE
  name text := 'audit_events_' || to_char(m, 'YYYY_MM');
BEGIN
  IF m <> date_trunc('month', m)::date THEN
    RAISE EXCEPTION 'audit partition month must be the first day of a month, got %', m;
  END IF;
  IF to_regclass(name) IS NOT NULL THEN
    RETURN false;
  END IF;
  BEGIN
    EXECUTE format('CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
      name, m, (m + interval '1 month')::date);
  EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'cannot create audit partition %: audit_events_default already holds events of that month', name
      USING HINT = 'partitions were not created ahead (is the token service running?); see docs/audit.md "Partitions and retention"';
  END;
  EXECUTE format('CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON %I '
    'FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_rewrite()', name);
  RETURN true;
END;
$$;
--> statement-breakpoint
REVOKE ALL ON FUNCTION audit_events_partition(date) FROM PUBLIC;
--> statement-breakpoint
-- Creates this month's partition and the next `months_ahead` (0..12); returns how many it made.
-- SECURITY DEFINER, so a token service whose role may only INSERT and SELECT can still keep
-- partitions ahead (it can create nothing else); serialised by an advisory lock.
CREATE FUNCTION audit_events_ensure_partitions(months_ahead integer DEFAULT 2) RETURNS integer
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
  made integer := 0;
  this_month date := (date_trunc('month', clock_timestamp() at time zone 'UTC'))::date;
BEGIN
  IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 12 THEN
    RAISE EXCEPTION 'months_ahead must be 0..12';
  END IF;
  PERFORM pg_advisory_xact_lock(7305512019);
  FOR i IN 0..months_ahead LOOP
    IF audit_events_partition((this_month + make_interval(months => i))::date) THEN
      made := made + 1;
    END IF;
  END LOOP;
  RETURN made;
END;
$$;
--> statement-breakpoint
GRANT EXECUTE ON FUNCTION audit_events_ensure_partitions(integer) TO PUBLIC;
--> statement-breakpoint
CREATE TABLE "audit_events_default" PARTITION OF "audit_events" DEFAULT;
--> statement-breakpoint
CREATE TRIGGER "audit_events_no_truncate" BEFORE TRUNCATE ON "audit_events_default"
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_rewrite();
--> statement-breakpoint
-- The rows move in seq order; each goes to the month of the latest `at` up to it (clamped to this
-- month), so the month never decreases along seq.
DO $$
DECLARE
  m date;
BEGIN
  FOR m IN SELECT DISTINCT least(date_trunc('month', at at time zone 'UTC'),
                                 date_trunc('month', clock_timestamp() at time zone 'UTC'))::date
             FROM audit_events_unpartitioned LOOP
    PERFORM audit_events_partition(m);
  END LOOP;
  PERFORM audit_events_ensure_partitions(2);
END;
$$;
--> statement-breakpoint
INSERT INTO "audit_events"
  ("seq", "id", "at", "type", "actor", "campaign_id", "link_id", "decision", "reason", "data",
   "prev_hash", "hash", "leaf_hash", "partition_month")
SELECT "seq", "id", "at", "type", "actor", "campaign_id", "link_id", "decision", "reason", "data",
       "prev_hash", "hash", "leaf_hash",
       (max(least(date_trunc('month', "at" at time zone 'UTC'),
                  date_trunc('month', clock_timestamp() at time zone 'UTC'))) OVER (ORDER BY "seq"))::date
  FROM "audit_events_unpartitioned"
 ORDER BY "seq";
--> statement-breakpoint
DROP TABLE "audit_events_unpartitioned";
