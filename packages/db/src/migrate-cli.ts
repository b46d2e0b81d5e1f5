/**
 * `pnpm db:migrate`: applies the committed migrations to DATABASE_URL, else to the embedded
 * database in DATA_DIR (default `./.data` from where pnpm was invoked). Idempotent.
 */
import { runMigrateCli } from "./cli.ts";

process.exitCode = await runMigrateCli(process.env, process);
