/** `pnpm db:restore FILE [--force]`: loads a `pnpm db:backup` tarball into DATA_DIR. */
import { runRestoreCli } from "./cli.ts";

process.exitCode = await runRestoreCli(process.argv.slice(2), process.env, process);
