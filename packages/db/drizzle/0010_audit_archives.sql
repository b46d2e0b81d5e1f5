CREATE TABLE "audit_archives" (
	"from_seq" bigint PRIMARY KEY NOT NULL,
	"to_seq" bigint NOT NULL,
	"head" text NOT NULL,
	"months" jsonb NOT NULL,
	"checkpoint_size" bigint NOT NULL,
	"file_sha256" text NOT NULL,
	"archived_at" timestamp (3) with time zone NOT NULL
);
--> statement-breakpoint
-- Append-only, like the events and checkpoints: a deleted row would let the live log start later.
CREATE TRIGGER audit_archives_no_update_delete
  BEFORE UPDATE OR DELETE ON audit_archives
  FOR EACH ROW EXECUTE FUNCTION audit_refuse_rewrite();
--> statement-breakpoint
CREATE TRIGGER audit_archives_no_truncate
  BEFORE TRUNCATE ON audit_archives
  FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_rewrite();
