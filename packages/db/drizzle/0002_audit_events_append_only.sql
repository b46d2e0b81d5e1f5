-- Custom SQL migration file, put your code below! --
-- The audit log is append-only: a row, once written, is a leaf of the signed Merkle tree. The
-- trigger refuses UPDATE, DELETE and TRUNCATE for every role that does not own the table (or
-- bypass triggers), so a service with a leaked connection cannot quietly rewrite history. An
-- owner can still disable it: that is what the signed checkpoints outside the database are for.
CREATE FUNCTION audit_events_refuse_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege', HINT = 'audit events are never changed or removed';
END;
$$;
--> statement-breakpoint
CREATE TRIGGER audit_events_no_update_delete
  BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_rewrite();
--> statement-breakpoint
CREATE TRIGGER audit_events_no_truncate
  BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_rewrite();
