-- audit_append() refuses to run at any isolation but READ COMMITTED (written by hand), so that the
-- batch writer can call it as a prepared statement on its own: bound parameters instead of every
-- value inlined as a literal, which Postgres lexed, parsed and analysed afresh for every batch
-- (~25 % of the backend's CPU per append, perf). The simple-protocol call kept the isolation right
-- by sending `SET TRANSACTION ISOLATION LEVEL READ COMMITTED` first; a prepared call alone runs at
-- the session's default, which an operator may have set higher: then this raises before taking
-- the lock or writing anything, and the writer falls back to the two-statement call. Same
-- signature, body and privileges otherwise (CREATE OR REPLACE keeps the owner and grants).
CREATE OR REPLACE FUNCTION public.audit_append(
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
  -- The head below must be read with a snapshot taken after the lock: only READ COMMITTED gives
  -- one. Sent alone (a prepared call, not after SET TRANSACTION), the call runs at the server's or
  -- role's default isolation: refuse anything else, before writing anything (the caller retries
  -- with the isolation set explicitly).
  IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'audit_append() needs READ COMMITTED, not %', pg_catalog.current_setting('transaction_isolation')
      USING ERRCODE = 'invalid_transaction_state';
  END IF;
  PERFORM pg_catalog.pg_advisory_xact_lock(lock_key);
  -- READ COMMITTED (checked above): this statement's snapshot is taken after the lock, so it
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
