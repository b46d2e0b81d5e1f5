/** `pnpm db:backup [--out FILE]`: the embedded database in DATA_DIR as a tarball. */
import { runBackupCli } from "./cli.ts";

process.exitCode = await runBackupCli(process.argv.slice(2), process.env, process);
