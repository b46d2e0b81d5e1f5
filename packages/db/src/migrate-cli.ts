/**
 * `pnpm db:migrate`: applies the committed migrations to DATABASE_URL, else to the embedded
 * database in DATA_DIR (default `./.data` from where pnpm was invoked). Idempotent. `--check
 * [--wait SECONDS]` applies nothing: whether it is migrated (see runMigrateCli).
 */
import { runMigrateCli } from "./cli.ts";

process.exitCode = await runMigrateCli(process.env, process, process.argv.slice(2));
