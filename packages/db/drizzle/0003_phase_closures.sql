CREATE TABLE "phase_closures" (
	"id" integer PRIMARY KEY GENERATED ALWAYS AS IDENTITY (sequence name "phase_closures_id_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1),
	"contest_id" text NOT NULL,
	"phase" text NOT NULL,
	"closed_at" timestamp with time zone NOT NULL,
	"reason" text NOT NULL,
	"actor" text NOT NULL
);
--> statement-breakpoint
ALTER TABLE "phase_closures" ADD CONSTRAINT "phase_closures_contest_id_contests_id_fk" FOREIGN KEY ("contest_id") REFERENCES "public"."contests"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "phase_closures_phase_idx" ON "phase_closures" USING btree ("contest_id","phase");