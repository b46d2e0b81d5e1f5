import { createHash } from "node:crypto";
import { once } from "node:events";
import { createWriteStream } from "node:fs";
import { mkdir, readdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { type Db, queryRows, schema } from "@phaselock/db";
import { desc, sql } from "drizzle-orm";
import { readLines } from "./cli/shared.ts";
import {
  describeExportResult,
  exportLine,
  headerLine,
  stitchExports,
  trailerLine,
  verifyExport,
} from "./export-format.ts";
import { eventLeafHash } from "./leaf.ts";
import { equalHash, IncrementalTree, toBase64 } from "./merkle.ts";
import { parseVerifierKey, verifyCheckpoint } from "./note.ts";
import { readLeafHashes, streamEvents } from "./store.ts";

const { auditArchives } = schema;

/** `YYYY-MM` of a month partition's name (`audit_events_2026_01`), or null for any other table. */
const PARTITION = /^audit_events_(\d{4})_(\d{2})$/;
const MONTH = /^\d{4}-(0[1-9]|1[0-2])$/;

/** An archive file's name: seqs zero-padded, so names sort in log order. */
export const archiveFileName = (fromSeq: number, toSeq: number): string =>
  `audit-${String(fromSeq).padStart(12, "0")}-${String(toSeq).padStart(12, "0")}.ndjson`;
const ARCHIVE_FILE = /^audit-\d{12}-\d{12}\.ndjson$/;

export class ArchiveRefusedError extends Error {
  readonly code = "archive_refused";
  constructor(message: string) {
    super(message);
    this.name = "ArchiveRefusedError";
  }
}

export interface ArchiveOptions {
  db: Db;
  /** Retire every month partition before this month (`YYYY-MM`). */
  before: string;
  /** Where the archives are kept: every earlier archive of this log must be in it too. */
  outDir: string;
  now: Date;
  /**
   * The log's verifier key. Default: the `audit.vkey` of the folder's earlier archives, else the
   * only key in `audit_keys` (refused when it holds several). Only checkpoints it signed count.
   */
  verifierKey?: string | undefined;
  log?: ((line: string) => void) | undefined;
}

export interface ArchiveResult {
  /** The month partitions dropped, `YYYY-MM`. */
  months: string[];
  /** The retired stretch of the log, or null when the partitions held no events. */
  archived: {
    fromSeq: number;
    toSeq: number;
    file: string;
    checkpoint: string;
    checkpointSize: number;
  } | null;
}

/**
 * Retires the month partitions of `audit_events` before `before` (docs/audit.md, "Partitions and
 * retention"), the one sanctioned way around the no-DELETE rule. Writes their events as an export
 * file (`audit-<from>-<to>.ndjson`), with the first signed checkpoint that covers them
 * (`checkpoint-<size>.note`) and the verifier key (`audit.vkey`), then verifies, from the files on
 * disk: that every archive in `outDir` plus the database's remaining leaves up to the checkpoint
 * form the tree the checkpoint signed. Only then, in one transaction, records the stretch in
 * `audit_archives` and detaches and drops the partitions. Refuses (ArchiveRefusedError, nothing
 * dropped) when the stretch is not the oldest part of the live log, when no checkpoint signed by
 * the log's key covers it yet, when that key is not certain (see `verifierKey`), or when anything
 * fails to verify. Needs the table owner's role (DETACH/DROP).
 */
export async function archiveBefore(opts: ArchiveOptions): Promise<ArchiveResult> {
  const { db, before, outDir } = opts;
  const log = opts.log ?? (() => {});
  if (!MONTH.test(before)) throw new ArchiveRefusedError(`--before must be YYYY-MM, got ${before}`);
  const cutoff = `${before}-01`;

  const partitions = (
    await queryRows<{ name: string }>(
      db,
      sql`select c.relname as name from pg_inherits i join pg_class c on c.oid = i.inhrelid
          where i.inhparent = 'audit_events'::regclass order by c.relname`,
    )
  )
    .map((r) => ({ name: r.name, match: PARTITION.exec(r.name) }))
    .filter((p) => p.match !== null)
    .map((p) => ({ name: p.name, month: `${p.match![1]}-${p.match![2]}` }))
    .filter((p) => p.month < before);
  if (partitions.length === 0) return { months: [], archived: null };
  const months = partitions.map((p) => p.month);

  const [stray] = await queryRows<{ n: number }>(
    db,
    sql`select count(*)::int as n from audit_events_default where partition_month < ${cutoff}::date`,
  );
  if ((stray?.n ?? 0) > 0) {
    throw new ArchiveRefusedError(
      `audit_events_default holds ${stray!.n} events before ${before}: their month had no partition; they cannot be retired by month`,
    );
  }
  const [range] = await queryRows<{
    lo: string | null;
    hi: string | null;
    n: string;
    live_lo: string | null;
    after: string;
  }>(
    db,
    sql`select (select min(seq) from audit_events where partition_month < ${cutoff}::date)::text as lo,
          (select max(seq) from audit_events where partition_month < ${cutoff}::date)::text as hi,
          (select count(*) from audit_events where partition_month < ${cutoff}::date)::text as n,
          (select min(seq) from audit_events)::text as live_lo,
          (select count(*) from audit_events where partition_month >= ${cutoff}::date
             and seq <= (select max(seq) from audit_events where partition_month < ${cutoff}::date))::text as after`,
  );
  const [last] = await db.select().from(auditArchives).orderBy(desc(auditArchives.toSeq)).limit(1);
  const expectedFrom = (last?.toSeq ?? 0) + 1;

  if (range?.lo == null || range.hi == null) {
    // Empty partitions: nothing to archive, nothing that could break the tree.
    await db.transaction((tx) =>
      dropPartitions(
        tx,
        partitions.map((p) => p.name),
      ),
    );
    log(`dropped ${partitions.length} empty partition(s): ${months.join(", ")}`);
    return { months, archived: null };
  }
  const fromSeq = Number(range.lo);
  const toSeq = Number(range.hi);
  if (fromSeq !== expectedFrom || Number(range.live_lo) !== fromSeq) {
    throw new ArchiveRefusedError(
      `the live log should start at seq ${expectedFrom} (after the last archive), but the oldest events start at ${range.live_lo}: refusing to archive over a gap`,
    );
  }
  if (Number(range.n) !== toSeq - fromSeq + 1 || Number(range.after) !== 0) {
    throw new ArchiveRefusedError(
      `the partitions before ${before} do not hold one contiguous stretch of the log (seq ${fromSeq}..${toSeq}): refusing`,
    );
  }

  // The log's verifier key: never one merely found next to a checkpoint in the database (the
  // services' role may insert both a key and a checkpoint it signed). `--key`, else the key the
  // folder's earlier archives were made with, else the database's only one.
  const keyFile = join(outDir, "audit.vkey");
  const pinned = await readFile(keyFile, "utf8").then(
    (text) => text.trim(),
    (err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return undefined;
      throw err;
    },
  );
  let keyText: string;
  if (opts.verifierKey !== undefined) {
    keyText = opts.verifierKey.trim();
    if (pinned !== undefined && pinned !== keyText) {
      throw new ArchiveRefusedError(
        `${keyFile} holds another verifier key than --key: the archives in ${outDir} belong to the log of that key; refusing to mix logs`,
      );
    }
  } else if (pinned !== undefined) {
    keyText = pinned;
  } else {
    const keys = await queryRows<{ verifier_key: string }>(db, sql`select verifier_key from audit_keys`);
    if (keys.length !== 1) {
      throw new ArchiveRefusedError(
        `audit_keys holds ${keys.length} verifier keys: pass --key with the log's own (the body of /.well-known/audit-key, or an auditor's copy)`,
      );
    }
    keyText = keys[0]!.verifier_key.trim();
  }
  let key: ReturnType<typeof parseVerifierKey>;
  try {
    key = parseVerifierKey(keyText);
  } catch (err) {
    throw new ArchiveRefusedError(`not a verifier key: ${(err as Error).message}`);
  }

  // The first checkpoint covering the stretch that this key signed; rows it did not sign are skipped.
  let cp: { tree_size: string; note: string } | undefined;
  let signed: ReturnType<typeof verifyCheckpoint> | undefined;
  let after = toSeq - 1;
  while (cp === undefined) {
    const page = await queryRows<{ tree_size: string; note: string }>(
      db,
      sql`select tree_size::text, note from audit_checkpoints where tree_size > ${after}
          order by tree_size asc limit 100`,
    );
    if (page.length === 0) break;
    for (const row of page) {
      const opened = verifyCheckpoint(row.note, key, key.name);
      if (opened.ok && opened.checkpoint.size === Number(row.tree_size)) {
        cp = row;
        signed = opened;
        break;
      }
    }
    after = Number(page.at(-1)!.tree_size);
  }
  if (!cp || !signed?.ok) {
    throw new ArchiveRefusedError(
      `no signed checkpoint covers seq ${toSeq} yet (none by ${key.name}): wait for the token service's next checkpoint (at most 10 s while events arrive)`,
    );
  }
  const checkpointSize = Number(cp.tree_size);

  // The files, written to temporary names and renamed once complete.
  await mkdir(outDir, { recursive: true, mode: 0o700 });
  const file = archiveFileName(fromSeq, toSeq);
  const checkpointFile = `checkpoint-${checkpointSize}.note`;
  const tmp = join(outDir, `${file}.partial`);
  const out = createWriteStream(tmp, { mode: 0o600 });
  const write = async (line: string) => {
    if (!out.write(`${line}\n`)) await once(out, "drain");
  };
  let first = true;
  let head = "";
  let n = 0;
  for await (const e of streamEvents(db, { fromSeq, toSeq, batchSize: 5_000 })) {
    if (first) await write(headerLine(fromSeq, e.prevHash));
    first = false;
    await write(exportLine(e));
    head = e.hash;
    n++;
  }
  await write(trailerLine(n, head));
  out.end();
  await once(out, "close");
  await rename(tmp, join(outDir, file));
  await writeFile(join(outDir, checkpointFile), cp.note, { mode: 0o600 });
  if (pinned === undefined) await writeFile(keyFile, keyText, { mode: 0o600 });
  const fileSha256 = createHash("sha256")
    .update(await readFile(join(outDir, file)))
    .digest("hex");
  log(`wrote ${join(outDir, file)} (${n} events, seq ${fromSeq}..${toSeq}) and ${checkpointFile}`);

  // Verify from the disk: every archive of the log, then the database's leaves up to the checkpoint.
  const files = (await readdir(outDir)).filter((f) => ARCHIVE_FILE.test(f)).sort();
  if (files.at(-1) !== file) throw new ArchiveRefusedError(`${outDir} holds an archive newer than ${file}`);
  const tree = new IncrementalTree();
  const chain = await verifyExport(stitchExports(files.map((f) => () => readLines(join(outDir, f)))), {
    onEvent: (e) => tree.appendLeafHash(eventLeafHash(e)),
  }).catch((err: unknown) => {
    throw new ArchiveRefusedError(
      `the archives in ${outDir} do not read as one log: ${(err as Error).message}`,
    );
  });
  if (!chain.ok) throw new ArchiveRefusedError(`the archives do not verify: ${describeExportResult(chain)}`);
  if (chain.fromSeq !== 1 || tree.size !== toSeq) {
    throw new ArchiveRefusedError(
      `the archives in ${outDir} cover seq ${chain.fromSeq}..${chain.fromSeq + tree.size - 1}, not 1..${toSeq}: keep every archive of the log in one folder`,
    );
  }
  // The tree of the archived stretch: the live log's tree resumes from it (verifyStored).
  const frontier = tree.frontier().map(toBase64);
  const rest = await readLeafHashes(db, toSeq, checkpointSize);
  if (rest.length !== checkpointSize - toSeq)
    throw new ArchiveRefusedError("leaves after the stretch are missing");
  for (const h of rest) tree.appendLeafHash(h);
  if (!equalHash(tree.root(), signed.checkpoint.rootHash)) {
    throw new ArchiveRefusedError(
      `the archive plus the live leaves give root ${toBase64(tree.root())}, checkpoint ${checkpointSize} signed ${toBase64(signed.checkpoint.rootHash)}: nothing dropped`,
    );
  }
  log(`verified: archives 1..${toSeq} + live leaves up to ${checkpointSize} match the signed checkpoint`);

  await db.transaction(async (tx) => {
    await tx.insert(auditArchives).values({
      fromSeq,
      toSeq,
      head,
      months,
      checkpointSize,
      frontier,
      fileSha256,
      archivedAt: opts.now,
    });
    await dropPartitions(
      tx,
      partitions.map((p) => p.name),
    );
  });
  log(`dropped partition(s) ${months.join(", ")}`);
  return { months, archived: { fromSeq, toSeq, file, checkpoint: checkpointFile, checkpointSize } };
}

/** Detaches and drops month partitions: call inside a transaction. */
async function dropPartitions(tx: Db, names: readonly string[]): Promise<void> {
  for (const name of names) {
    if (!PARTITION.test(name)) throw new Error(`not an audit partition: ${name}`);
    await tx.execute(sql.raw(`alter table audit_events detach partition "${name}"`));
    await tx.execute(sql.raw(`drop table "${name}"`));
  }
}

/** The newest archived stretch (the live log continues from its head), or undefined. */
export async function latestArchive(db: Db): Promise<{ toSeq: number; head: string } | undefined> {
  const [row] = await db
    .select({ toSeq: auditArchives.toSeq, head: auditArchives.head })
    .from(auditArchives)
    .orderBy(desc(auditArchives.toSeq))
    .limit(1);
  return row;
}

/** Creates this month's partition and the next `monthsAhead` (SQL `audit_events_ensure_partitions`). */
export async function ensureAuditPartitions(db: Db, monthsAhead = 2): Promise<number> {
  const [row] = await queryRows<{ made: number }>(
    db,
    sql`select audit_events_ensure_partitions(${monthsAhead}::int) as made`,
  );
  return row?.made ?? 0;
}
