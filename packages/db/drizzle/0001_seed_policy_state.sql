-- The single policy_state row every policy write bumps (see src/schema/policy-state.ts).
INSERT INTO "policy_state" ("id", "version") VALUES (1, 0) ON CONFLICT ("id") DO NOTHING;
