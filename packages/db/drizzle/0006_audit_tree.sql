CREATE TABLE "audit_checkpoints" (
	"tree_size" bigint PRIMARY KEY NOT NULL,
	"root_hash" text NOT NULL,
	"note" text NOT NULL,
	"frontier" jsonb NOT NULL,
	"created_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
CREATE TABLE "audit_keys" (
	"origin" text PRIMARY KEY NOT NULL,
	"verifier_key" text NOT NULL,
	"private_key_enc" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
-- Edited by hand (drizzle-kit wrote `ADD COLUMN leaf_hash text NOT NULL`, which fails on a table
-- that already holds events): add the column, backfill each stored event's RFC 9162 leaf hash,
-- SHA-256(0x00 || canonical JSON), then require it. The canonical JSON is rebuilt in SQL exactly as
-- packages/audit/src/chain.ts `canonicalEvent` writes it, and checked against the row's own chain
-- hash (sha256(prev_hash || "\n" || canonical)): a row whose bytes cannot be reproduced, or a
-- chain that was rewritten, stops the migration instead of being anchored in the tree.
ALTER TABLE "audit_events" ADD COLUMN "leaf_hash" text;
--> statement-breakpoint
CREATE FUNCTION audit_canonical_json_0006(v jsonb) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  out text;
BEGIN
  CASE jsonb_typeof(v)
    WHEN 'object' THEN
      SELECT '{' || coalesce(string_agg(to_json(k)::text || ':' || audit_canonical_json_0006(x), ',' ORDER BY k COLLATE "C"), '') || '}'
        INTO out FROM jsonb_each(v) AS t(k, x);
    WHEN 'array' THEN
      SELECT '[' || coalesce(string_agg(audit_canonical_json_0006(x), ',' ORDER BY i), '') || ']'
        INTO out FROM jsonb_array_elements(v) WITH ORDINALITY AS t(x, i);
    ELSE
      out := v::text;
  END CASE;
  RETURN out;
END;
$$;
--> statement-breakpoint
CREATE FUNCTION audit_canonical_event_0006(r audit_events) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT '{"actor":' || coalesce(to_json(r.actor)::text, 'null')
    || ',"at":"' || to_char(r.at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"'
    || ',"campaignId":' || coalesce(to_json(r.campaign_id)::text, 'null')
    || ',"data":' || audit_canonical_json_0006(r.data)
    || ',"decision":' || coalesce(to_json(r.decision)::text, 'null')
    || ',"id":' || to_json(r.id)::text
    || ',"linkId":' || coalesce(to_json(r.link_id)::text, 'null')
    || ',"reason":' || coalesce(to_json(r.reason)::text, 'null')
    || ',"seq":' || r.seq::text
    || ',"type":' || to_json(r.type)::text || '}'
$$;
--> statement-breakpoint
CREATE FUNCTION audit_backfill_leaf_hashes_0006() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  broken bigint;
BEGIN
  SELECT min(e.seq) INTO broken FROM audit_events e
    WHERE encode(sha256(convert_to(e.prev_hash || E'\n' || audit_canonical_event_0006(e), 'UTF8')), 'hex') <> e.hash;
  IF broken IS NOT NULL THEN
    RAISE EXCEPTION 'audit_events seq % does not match its own chain hash: the stored log was changed (or holds bytes this migration cannot reproduce), so it is not anchored in the audit tree', broken
      USING HINT = 'run `pnpm audit:verify` to find the break, and restore the log from a backup before migrating';
  END IF;
  -- The one sanctioned UPDATE of the log: filling a new column, by the table's owner, checked above.
  ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_delete;
  UPDATE audit_events e SET leaf_hash = encode(sha256('\x00'::bytea || convert_to(audit_canonical_event_0006(e), 'UTF8')), 'hex');
  ALTER TABLE audit_events ENABLE TRIGGER audit_events_no_update_delete;
END;
$$;
--> statement-breakpoint
SELECT audit_backfill_leaf_hashes_0006();
--> statement-breakpoint
DROP FUNCTION audit_backfill_leaf_hashes_0006();
--> statement-breakpoint
DROP FUNCTION audit_canonical_event_0006(audit_events);
--> statement-breakpoint
DROP FUNCTION audit_canonical_json_0006(jsonb);
--> statement-breakpoint
ALTER TABLE "audit_events" ALTER COLUMN "leaf_hash" SET NOT NULL;
