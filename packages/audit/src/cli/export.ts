/**
 * `pnpm audit:export [--since 2026-01-01] [--out file]`: writes the audit chain as NDJSON (a
 * header, one line per event, a trailer) to stdout or `--out`, from DATABASE_URL, else the
 * embedded database in DATA_DIR (default `./.data`). Progress goes to stderr.
 *
 * The embedded database belongs to one process: while a service holds DATA_DIR the export goes
 * through the running token service's `GET /v1/audit/export`, the same file (admin token from
 * ADMIN_TOKEN or the dev secrets file), and never opens the PGlite files; with no token service to
 * ask it refuses.
 */
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { open, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { Writable } from "node:stream";
import { parseArgs } from "node:util";
import {
  acquireDataDirLock,
  type DataDirLock,
  DataDirLockedError,
  databaseUrlOf,
  describeHolder,
  type LockHolder,
  liveLockHolder,
  localServiceUrl,
} from "@phaselock/core";
import {
  assertMigrated,
  createDb,
  type Db,
  type DbHandle,
  hasEmbeddedDatabase,
  openDb,
  schema,
} from "@phaselock/db";
import { parseHeader, parseTrailer } from "../export-format.ts";
import { exportEvents } from "../store.ts";
import { isMain, redactUrl, userPath } from "./shared.ts";

/** Where the holder's token service answers, or undefined when it runs none. */
function serviceUrl(holder: LockHolder, env: NodeJS.ProcessEnv): string | undefined {
  const port = holder.ports.tokenService;
  if (port === undefined) return undefined;
  return localServiceUrl(env.HOST || "127.0.0.1", port);
}

function adminTokenFor(dataDir: string, env: NodeJS.ProcessEnv): string | undefined {
  if (env.ADMIN_TOKEN) return env.ADMIN_TOKEN;
  const path = join(dataDir, "dev-secrets.json");
  if (!existsSync(path)) return undefined;
  return (JSON.parse(readFileSync(path, "utf8")) as { adminToken?: string }).adminToken;
}

/** An answer's problem code and detail (RFC 9457), for the message; empty when it has none. */
async function problemText(res: Response): Promise<string> {
  try {
    const p = (await res.json()) as { code?: unknown; detail?: unknown };
    if (typeof p.code !== "string") return "";
    return ` (${p.code}${typeof p.detail === "string" ? `: ${p.detail}` : ""})`;
  } catch {
    return "";
  }
}

/**
 * The lines of the service's answer, without their newlines; the next chunk is read only once the
 * lines before it are taken. A body that breaks off while read fails, naming how far it got.
 */
async function* bodyLines(body: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let rest = "";
  let lines = 0;
  try {
    for await (const chunk of body) {
      const parts = (rest + decoder.decode(chunk, { stream: true })).split("\n");
      rest = parts.pop() ?? "";
      for (const line of parts) {
        lines++;
        yield line;
      }
    }
  } catch (err) {
    throw new Error(
      `the token service's export broke off after ${lines} lines (${err instanceof Error ? err.message : String(err)}); the file is incomplete`,
    );
  }
  rest += decoder.decode();
  if (rest !== "") yield rest;
}

const EXPORT_PATH = "/v1/audit/export";

/** Events between progress lines on stderr, on either path. */
const PROGRESS_EVERY = 5_000;

/**
 * The export of the running token service's `GET /v1/audit/export` (the service runs
 * `exportEvents`, its end fixed when the request starts), passed through line by line: the next
 * chunk is read only once `write` is done. A body without its trailer was cut short and fails
 * (the file is incomplete), as does any answer but 2xx.
 */
async function exportViaService(
  base: string,
  token: string,
  since: Date | undefined,
  write: (line: string) => Promise<void>,
  onProgress: (n: number) => void,
): Promise<{ events: number; head: string }> {
  const query = since ? `?${new URLSearchParams({ since: since.toISOString() })}` : "";
  const res = await fetch(`${base}${EXPORT_PATH}${query}`, {
    headers: { authorization: `Bearer ${token}`, accept: "application/x-ndjson" },
  });
  if (!res.ok || res.body === null) {
    throw new Error(
      `the token service answered ${res.status} to GET ${EXPORT_PATH}${await problemText(res)}`,
    );
  }
  let lines = 0;
  let last: string | undefined;
  for await (const line of bodyLines(res.body as AsyncIterable<Uint8Array>)) {
    if (lines === 0 && parseHeader(line) === null) {
      throw new Error(`the token service's GET ${EXPORT_PATH} did not answer an audit export`);
    }
    await write(line);
    lines++;
    last = line;
    // Lines between the header and the trailer are events.
    if (lines > 1 && (lines - 1) % PROGRESS_EVERY === 0) onProgress(lines - 1);
  }
  const trailer = last === undefined ? null : parseTrailer(last);
  if (trailer === null || trailer.events !== lines - 2) {
    throw new Error(
      `the token service's export ended without its trailer after ${lines} lines (cut short: see the service's log); the file is incomplete`,
    );
  }
  onProgress(trailer.events);
  return { events: trailer.events, head: trailer.head };
}

/**
 * The log's verifier key when the database holds exactly one (a `--since` export's frontier then
 * resumes from a checkpoint it signed); with none or several, none: the frontier is then worked
 * out from every stored leaf, trusting no row.
 */
async function soleVerifierKey(db: Db): Promise<string | undefined> {
  const rows = await db.select({ key: schema.auditKeys.verifierKey }).from(schema.auditKeys).limit(2);
  return rows.length === 1 ? rows[0]!.key : undefined;
}

const USAGE = "usage: pnpm audit:export [--since YYYY-MM-DD[THH:mm:ssZ]] [--out file.ndjson | --out -]\n";

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

  let databaseUrl: string | undefined;
  try {
    databaseUrl = databaseUrlOf(env);
  } catch (err) {
    io.stderr.write(`audit:export: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  const dataDir = databaseUrl ? undefined : userPath(env.DATA_DIR || "./.data", env);
  const source = databaseUrl ? `postgres ${redactUrl(databaseUrl)}` : `embedded PGlite in ${dataDir}`;
  // `--out -` is stdout, as for most CLIs: never a file named "-".
  const outPath = values.out === undefined || values.out === "-" ? undefined : userPath(values.out, env);
  // The file is written beside its name and renamed over it once whole: a failed export leaves
  // whatever was at --out untouched and no partial file that could pass for an export.
  const partPath = outPath === undefined ? undefined : `${outPath}.partial-${randomBytes(6).toString("hex")}`;
  let out: Writable = io.stdout;
  if (partPath !== undefined) {
    try {
      out = (await open(partPath, "wx")).createWriteStream();
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
  let handle: DbHandle | undefined;
  let lock: DataDirLock | undefined;
  const onProgress = (n: number) => {
    if (n > 0) io.stderr.write(`audit:export: ${n} events\n`);
  };
  try {
    let result: { events: number; head: string };
    const holder = dataDir === undefined ? undefined : liveLockHolder(dataDir);
    if (dataDir !== undefined && holder !== undefined) {
      const base = serviceUrl(holder, env);
      const token = adminTokenFor(dataDir, env);
      if (base === undefined || token === undefined) {
        throw new Error(
          `the embedded database in ${dataDir} is in use by ${describeHolder(holder)}, which ${base === undefined ? "runs no token service to export through" : "has no admin token in ADMIN_TOKEN or dev-secrets.json"}; stop it first`,
        );
      }
      io.stderr.write(
        `audit:export: ${dataDir} is in use by pid ${holder.pid}; reading through its token service at ${base}${since ? ` since ${since.toISOString()}` : ""}\n`,
      );
      result = await exportViaService(base, token, since, (line) => writeLine(out, line), onProgress).catch(
        (err: Error) => {
          // A service started with ADMIN_TOKEN set does not take the dev secrets file's token.
          if (env.ADMIN_TOKEN || !err.message.includes(" answered 401 ")) throw err;
          throw new Error(
            `${err.message}; the running service does not take the admin token in ${join(dataDir, "dev-secrets.json")}: set ADMIN_TOKEN to the one it was started with`,
          );
        },
      );
    } else {
      // A mistyped DATA_DIR must not become a new, empty database (whose advice would be to migrate it).
      if (dataDir !== undefined && !hasEmbeddedDatabase(dataDir)) {
        throw new Error(
          `no embedded database in ${dataDir}: nothing to export (DATA_DIR names where pnpm start keeps it, ./.data by default; DATABASE_URL a Postgres)`,
        );
      }
      // Held while reading, so a `pnpm start` meanwhile is refused rather than share the files.
      if (dataDir !== undefined) lock = acquireDataDirLock(dataDir, { command: "pnpm audit:export" });
      handle = databaseUrl ? createDb({ databaseUrl }) : await openDb({ dataDir });
      await assertMigrated(handle.db);
      io.stderr.write(`audit:export: reading ${source}${since ? ` since ${since.toISOString()}` : ""}\n`);
      result = await exportEvents(handle.db, {
        since,
        write: (line) => writeLine(out, line),
        batchSize: PROGRESS_EVERY,
        onProgress,
        verifierKey: await soleVerifierKey(handle.db),
      });
    }
    const { events, head } = result;
    if (out !== io.stdout) {
      out.end();
      await once(out, "finish");
    }
    if (writeError !== undefined) throw writeError;
    if (partPath !== undefined && outPath !== undefined) await rename(partPath, outPath);
    io.stderr.write(`audit:export: wrote ${events} events${outPath ? ` to ${outPath}` : ""}, head ${head}\n`);
    return 0;
  } catch (err) {
    const text =
      err instanceof DataDirLockedError
        ? `${err.message}; try again`
        : err instanceof Error
          ? err.message
          : String(err);
    io.stderr.write(`audit:export failed: ${text}${outPath ? ` (nothing written to ${outPath})` : ""}\n`);
    if (out !== io.stdout) out.destroy();
    if (partPath !== undefined) await rm(partPath, { force: true });
    return 1;
  } finally {
    out.off("error", onError);
    await handle?.close();
    lock?.release();
  }
}

if (isMain(import.meta.url)) {
  runExportCli(process.argv.slice(2), process.env, process).then((code) => {
    process.exitCode = code;
  });
}
