ALTER TABLE "api_keys" ADD COLUMN "last_used_at" timestamp with time zone;--> statement-breakpoint
CREATE INDEX "revocations_scope_link_idx" ON "revocations" USING btree ("scope","link_id");