/**
 * `pnpm audit:verify-export <file>`: checks an NDJSON audit export offline (no database): the
 * header, every line, the hash chain and the trailer. Prints `ok: …` and exits 0, or
 * `broken at seq …` and exits 1. `-` reads standard input.
 */
import type { Writable } from "node:stream";
import { describeExportResult, type ExportVerifyResult, verifyExport } from "../export-format.ts";
import { isMain, readLines, userPath } from "./shared.ts";

/** Verifies the export in `path` (or stdin for `-`). */
export async function verifyExportFile(path: string): Promise<ExportVerifyResult> {
  return verifyExport(readLines(path));
}

/** The CLI: returns the exit code (0 ok, 1 broken, 2 usage or unreadable file). */
export async function runVerifyCli(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  io: { stdout: Writable; stderr: Writable },
): Promise<number> {
  const args = argv.filter((a) => a !== "--");
  if (args.length !== 1 || args[0] === "--help" || args[0] === "-h") {
    io.stderr.write("usage: pnpm audit:verify-export <file.ndjson | ->\n");
    return 2;
  }
  const path = args[0] === "-" ? "-" : userPath(args[0] as string, env);
  let result: ExportVerifyResult;
  try {
    result = await verifyExportFile(path);
  } catch (err) {
    io.stderr.write(
      `audit:verify-export: cannot read ${path}: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    return 2;
  }
  io.stdout.write(`${describeExportResult(result)}\n`);
  return result.ok ? 0 : 1;
}

if (isMain(import.meta.url)) {
  runVerifyCli(process.argv.slice(2), process.env, process).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(`audit:verify-export failed: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = 2;
    },
  );
}
