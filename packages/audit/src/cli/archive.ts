/**
 * `pnpm audit:archive --before YYYY-MM --out DIR [--key KEY]`: retires the audit partitions of the
 * months before YYYY-MM (archiveBefore in ../archive.ts). Writes their events, the checkpoint that
 * covers them and the verifier key to DIR, verifies them there against the signed checkpoint, and
 * only then detaches and drops the partitions. DIR must hold every earlier archive of the log.
 *
 * Needs DATABASE_URL with the table owner's role (the services' INSERT/SELECT role cannot detach
 * or drop a partition, by design): an operator's step, never a service's. KEY pins the verifier
 * key (a key string or a file); by default DIR/audit.vkey of the earlier archives, else the only
 * key stored in audit_keys (refused when there are several). Exit 0 done (or
 * nothing to retire), 1 refused (nothing dropped), 2 usage.
 */

import { readFile } from "node:fs/promises";
import type { Writable } from "node:stream";
import { parseArgs } from "node:util";
import { databaseUrlOf } from "@phaselock/core";
import { assertMigrated, createDb } from "@phaselock/db";
import { ArchiveRefusedError, archiveBefore } from "../archive.ts";
import { isMain, redactUrl, userPath } from "./shared.ts";

const USAGE =
  "usage: pnpm audit:archive --before YYYY-MM --out DIR [--key KEY]   (DATABASE_URL: the owner's role)\n";

export async function runArchiveCli(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  io: { stdout: Writable; stderr: Writable },
): Promise<number> {
  let values: { before?: string; out?: string; key?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv.filter((a) => a !== "--"),
      options: {
        before: { type: "string" },
        out: { type: "string" },
        key: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }));
  } catch (err) {
    io.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    return 2;
  }
  if (values.help || !values.before || !values.out) {
    io.stderr.write(USAGE);
    return values.help ? 0 : 2;
  }
  let databaseUrl: string | undefined;
  try {
    databaseUrl = databaseUrlOf(env);
  } catch (err) {
    io.stderr.write(`audit:archive: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  if (!databaseUrl) {
    io.stderr.write(`audit:archive: set DATABASE_URL (the table owner's role)\n${USAGE}`);
    return 2;
  }
  const handle = createDb({ databaseUrl, poolSize: 2 });
  try {
    await assertMigrated(handle.db);
    let verifierKey: string | undefined;
    if (values.key !== undefined) {
      verifierKey = values.key.includes("+")
        ? values.key
        : (await readFile(userPath(values.key, env), "utf8")).trim();
    }
    const result = await archiveBefore({
      db: handle.db,
      before: values.before,
      outDir: userPath(values.out, env),
      now: new Date(),
      verifierKey,
      log: (line) => io.stderr.write(`audit:archive: ${line}\n`),
    });
    if (result.months.length === 0) io.stdout.write(`nothing to retire before ${values.before}\n`);
    else if (result.archived === null)
      io.stdout.write(`dropped empty partitions ${result.months.join(", ")}\n`);
    else {
      const a = result.archived;
      io.stdout.write(
        `archived seq ${a.fromSeq}..${a.toSeq} (${result.months.join(", ")}) to ${a.file} with ${a.checkpoint}; partitions dropped\n`,
      );
    }
    return 0;
  } catch (err) {
    if (err instanceof ArchiveRefusedError) {
      io.stdout.write(`refused: ${err.message}\n`);
      return 1;
    }
    io.stderr.write(
      `audit:archive: ${err instanceof Error ? err.message : String(err)} (database ${redactUrl(databaseUrl)})\n`,
    );
    return 1;
  } finally {
    await handle.close();
  }
}

if (isMain(import.meta.url)) {
  runArchiveCli(process.argv.slice(2), process.env, process).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      console.error(`audit:archive failed: ${err instanceof Error ? err.message : String(err)}`);
      process.exitCode = 2;
    },
  );
}
