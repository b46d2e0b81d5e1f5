/**
 * `pnpm audit:export [--since 2026-01-01] [--out file]`: writes the audit chain as NDJSON (a
 * header, one line per event, a trailer) to stdout or `--out`, from DATABASE_URL, else the
 * embedded database in DATA_DIR (default `./.data`). Progress goes to stderr.
 */
import { once } from "node:events";
import { open } from "node:fs/promises";
import type { Writable } from "node:stream";
import { parseArgs } from "node:util";
import { assertMigrated, createDb } from "@phaselock/db";
import { exportEvents } from "../store.ts";
import { isMain, redactUrl, userPath } from "./shared.ts";

const USAGE = "usage: pnpm audit:export [--since YYYY-MM-DD[THH:mm:ssZ]] [--out file.ndjson]\n";

/** Writes a line and waits when the stream asks for backpressure. */
async function writeLine(out: Writable, line: string): Promise<void> {
  if (out.destroyed) throw new Error("output closed");
  if (!out.write(`${line}\n`)) await once(out, "drain");
}

/** The CLI: returns the exit code (0 done, 1 failed, 2 usage). */
export async function runExportCli(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  io: { stdout: Writable; stderr: Writable },
): Promise<number> {
  let values: { since?: string | undefined; out?: string | undefined; help?: boolean | undefined };
  try {
    ({ values } = parseArgs({
      args: argv.filter((a) => a !== "--"),
      options: {
        since: { type: "string" },
        out: { type: "string", short: "o" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    io.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    io.stderr.write(USAGE);
    return 0;
  }
  const since = values.since === undefined ? undefined : new Date(values.since);
  if (since !== undefined && Number.isNaN(since.getTime())) {
    io.stderr.write(`--since: not a date: ${values.since}\n${USAGE}`);
    return 2;
  }

  const databaseUrl = env.DATABASE_URL || undefined;
  const dataDir = databaseUrl ? undefined : userPath(env.DATA_DIR || "./.data", env);
  const source = databaseUrl ? `postgres ${redactUrl(databaseUrl)}` : `embedded PGlite in ${dataDir}`;
  const outPath = values.out === undefined ? undefined : userPath(values.out, env);
  let out: Writable = io.stdout;
  if (outPath !== undefined) {
    try {
      out = (await open(outPath, "w")).createWriteStream();
    } catch (err) {
      io.stderr.write(
        `audit:export: cannot write ${outPath}: ${err instanceof Error ? err.message : String(err)}\n`,
      );
      return 1;
    }
  }
  let writeError: unknown;
  const onError = (err: unknown) => {
    writeError ??= err;
  };
  out.on("error", onError);
  const handle = createDb({ databaseUrl, dataDir });
  try {
    await assertMigrated(handle.db);
    io.stderr.write(`audit:export: reading ${source}${since ? ` since ${since.toISOString()}` : ""}\n`);
    const { events, head } = await exportEvents(handle.db, {
      since,
      write: (line) => writeLine(out, line),
      batchSize: 5_000,
      onProgress: (n) => {
        if (n > 0) io.stderr.write(`audit:export: ${n} events\n`);
      },
    });
    if (out !== io.stdout) {
      out.end();
      await once(out, "finish");
    }
    if (writeError !== undefined) throw writeError;
    io.stderr.write(`audit:export: wrote ${events} events${outPath ? ` to ${outPath}` : ""}, head ${head}\n`);
    return 0;
  } catch (err) {
    io.stderr.write(`audit:export failed: ${err instanceof Error ? err.message : String(err)}\n`);
    if (out !== io.stdout) out.destroy();
    return 1;
  } finally {
    out.off("error", onError);
    await handle.close();
  }
}

if (isMain(import.meta.url)) {
  runExportCli(process.argv.slice(2), process.env, process).then((code) => {
    process.exitCode = code;
  });
}
