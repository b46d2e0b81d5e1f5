CREATE INDEX "revocations_scope_contest_idx" ON "revocations" USING btree ("scope","contest_id","phase");--> statement-breakpoint
CREATE INDEX "revocations_scope_campaign_idx" ON "revocations" USING btree ("scope","campaign_id");--> statement-breakpoint
CREATE INDEX "revocations_scope_volunteer_idx" ON "revocations" USING btree ("scope","volunteer_ref");