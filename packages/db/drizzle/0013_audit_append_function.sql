-- audit_append(): the batch writer's one-round-trip append as one function call (written by hand).
-- The same steps the writer sent as statements (the chain lock; the head under the lock; the rows
-- only if that head is still the one they were chained onto; the head as it now stands), but
-- PL/pgSQL keeps the plans of its statements for the session: sent as text every time, the head
-- query on the partitioned table and the insert were planned afresh for every batch, most of
-- Postgres's fixed cost per batch. SECURITY INVOKER: the caller's own privileges (the services'
-- role inserts into audit_events and nothing more; partition_month keeps its default). Every name
-- is qualified (unnest of many arrays is FROM-clause syntax, resolved in pg_catalog, first on the
-- pinned search_path), so nothing a caller's session creates can stand in for them.
CREATE FUNCTION public.audit_append(
  lock_key bigint,
  expected_seq bigint,
  expected_hash text,
  p_seq bigint[],
  p_id text[],
  p_at timestamptz[],
  p_type text[],
  p_actor text[],
  p_campaign_id text[],
  p_link_id text[],
  p_decision text[],
  p_reason text[],
  p_data jsonb[],
  p_prev_hash text[],
  p_hash text[],
  p_leaf_hash text[]
) RETURNS TABLE (head_seq text, head_hash text)
  LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
  h_seq bigint;
  h_hash text;
BEGIN
  PERFORM pg_catalog.pg_advisory_xact_lock(lock_key);
  -- READ COMMITTED (the caller sets it): this statement's snapshot is taken after the lock, so it
  -- sees the previous holder's commit.
  SELECT e.seq, e.hash INTO h_seq, h_hash FROM public.audit_events e ORDER BY e.seq DESC LIMIT 1;
  IF (h_seq IS NULL AND expected_seq = 0) OR (h_seq = expected_seq AND h_hash = expected_hash) THEN
    INSERT INTO public.audit_events
      (seq, id, at, type, actor, campaign_id, link_id, decision, reason, data, prev_hash, hash, leaf_hash)
      SELECT * FROM unnest(p_seq, p_id, p_at, p_type, p_actor, p_campaign_id, p_link_id,
        p_decision, p_reason, p_data, p_prev_hash, p_hash, p_leaf_hash);
    SELECT e.seq, e.hash INTO h_seq, h_hash FROM public.audit_events e ORDER BY e.seq DESC LIMIT 1;
  END IF;
  RETURN QUERY SELECT h_seq::text, h_hash;
END;
$$;
