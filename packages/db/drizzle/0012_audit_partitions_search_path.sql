-- audit_events_ensure_partitions() is SECURITY DEFINER and callable by the services' role, so
-- nothing a caller's session can create may steer it. Its search_path ends in pg_temp, where any
-- role may create a table: an unqualified `to_regclass('audit_events_YYYY_MM')` found a caller's
-- temporary table of that name and skipped the month, whose events then went to the default
-- partition (which can neither be split by month nor retired). Every name is now qualified with
-- `public`, and a table of a partition's name that is not a partition of audit_events is an error.
CREATE OR REPLACE FUNCTION audit_events_partition(m date) RETURNS boolean LANGUAGE plpgsql
  SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  name text := 'audit_events_' || to_char(m, 'YYYY_MM');
  found regclass;
BEGIN
  IF m <> date_trunc('month', m)::date THEN
    RAISE EXCEPTION 'audit partition month must be the first day of a month, got %', m;
  END IF;
  found := to_regclass(format('public.%I', name));
  IF found IS NOT NULL THEN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits
                    WHERE inhrelid = found AND inhparent = 'public.audit_events'::regclass) THEN
      RAISE EXCEPTION 'public.% exists but is not a partition of audit_events', name;
    END IF;
    RETURN false;
  END IF;
  BEGIN
    EXECUTE format('CREATE TABLE public.%I PARTITION OF public.audit_events FOR VALUES FROM (%L) TO (%L)',
      name, m, (m + interval '1 month')::date);
  EXCEPTION WHEN check_violation THEN
    RAISE EXCEPTION 'cannot create audit partition %: audit_events_default already holds events of that month', name
      USING HINT = 'partitions were not created ahead (is the token service running?); see docs/audit.md "Partitions and retention"';
  END;
  EXECUTE format('CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON public.%I '
    'FOR EACH STATEMENT EXECUTE FUNCTION public.audit_events_refuse_rewrite()', name);
  RETURN true;
END;
$$;
--> statement-breakpoint
REVOKE ALL ON FUNCTION audit_events_partition(date) FROM PUBLIC;
--> statement-breakpoint
CREATE OR REPLACE FUNCTION audit_events_ensure_partitions(months_ahead integer DEFAULT 2) RETURNS integer
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  made integer := 0;
  this_month date := (date_trunc('month', clock_timestamp() at time zone 'UTC'))::date;
BEGIN
  IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 12 THEN
    RAISE EXCEPTION 'months_ahead must be 0..12';
  END IF;
  PERFORM pg_advisory_xact_lock(7305512019);
  FOR i IN 0..months_ahead LOOP
    IF public.audit_events_partition((this_month + make_interval(months => i))::date) THEN
      made := made + 1;
    END IF;
  END LOOP;
  RETURN made;
END;
$$;
