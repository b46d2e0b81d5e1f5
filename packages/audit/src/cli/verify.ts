/**
 * `pnpm audit:verify-export FILE [--key KEY --checkpoint CP [--checkpoint OLDER_CP]…]`
 *
 * Checks an NDJSON audit export offline: no database, no network. Always: the header, that every
 * line is exactly what the exporter writes, the hash chain and the trailer. With a key and
 * checkpoints (signed notes the auditor kept, e.g. from AUDIT_CHECKPOINT_DIR):
 *   1. every checkpoint is signed by KEY (a verifier-key string, or a file holding one), and all
 *      name the same log (origin);
 *   2. the export starts at the first event, or its header names the tree of the events before
 *      it (a `--since` export: its `frontier`), from which the tree resumes;
 *   3. each event is a leaf: SHA-256(0x00 || canonical event JSON), in seq order (docs/audit.md);
 *   4. for each checkpoint, the root of the export's first `size` leaves is the signed root, so
 *      no event before it was edited, removed, reordered or re-chained, and none is missing;
 *   5. each older checkpoint is consistent with the newest: the RFC 9162 consistency proof,
 *      computed from the export, verifies between their roots (for an export from seq 1; one
 *      resumed from a frontier has every checkpoint's root recomputed from the same leaves, which
 *      is that consistency already). A checkpoint older than a `--since` export's start cannot be
 *      checked with it: not verified (exit 1), saying so.
 * Events after the newest checkpoint are allowed (the log grew since). One pass, O(log n) memory.
 *
 * `--archive FILE` (repeatable): a retired stretch of the log written by `pnpm audit:archive`.
 * The archives, in seq order, are read before FILE as one log (stitchExports): each must continue
 * the one before, and FILE (a live export, which starts after the newest archive) the last.
 * Exit 0 ok; 1 broken, or not verified (a checkpoint the export cannot reach: one older than a
 * `--since` export's start, or any, for an export after seq 1 whose header names no frontier);
 * 2 usage or unreadable input.
 * `-` reads the export from standard input.
 */
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import type { Writable } from "node:stream";
import { parseArgs } from "node:util";
import type { StoredEvent } from "../chain.ts";
import {
  describeExportResult,
  type ExportHeader,
  type ExportVerifyResult,
  StitchError,
  stitchExports,
  verifyExport,
} from "../export-format.ts";
import { eventLeafHash } from "../leaf.ts";
import {
  consistencyProofRanges,
  equalHash,
  fromBase64,
  type Hash,
  IncrementalTree,
  type LeafRange,
  toBase64,
  verifyConsistency,
} from "../merkle.ts";
import { type Checkpoint, parseVerifierKey, type VerifierKey, verifyCheckpoint } from "../note.ts";
import { isMain, readLines, userPath } from "./shared.ts";

const USAGE =
  "usage: pnpm audit:verify-export <file.ndjson | -> [--archive ARCHIVE.ndjson]… [--key KEY --checkpoint CP [--checkpoint OLDER_CP]…]\n";

/** Verifies the export in `path` (or stdin for `-`): the chain only. */
export async function verifyExportFile(path: string): Promise<ExportVerifyResult> {
  return verifyExport(readLines(path));
}

interface KeptCheckpoint extends Required<Checkpoint> {
  file: string;
}

/**
 * `uncheckable`: the export's own chain verifies, but it starts after seq 1 with no frontier (or
 * after a checkpoint's size), so that checkpoint cannot be checked against it. A `--since` export
 * and a full one that lost its first events look the same here, so this is a failure to verify
 * (exit 1), only worded as what it is.
 */
export type TreeVerifyResult =
  | { ok: true; events: number; root: Hash; lines: string[] }
  | { ok: false; problem: string; uncheckable?: true };

/** One pass over the export: the chain checks, the tree root at each checkpoint size, the proofs. */
export async function verifyExportAgainst(
  lines: AsyncIterable<string> | Iterable<string>,
  checkpoints: readonly KeptCheckpoint[],
): Promise<TreeVerifyResult> {
  const newest = checkpoints.reduce((a, b) => (b.size > a.size ? b : a));
  let tree = new IncrementalTree();
  const rootAt = new Map<number, Hash>([[0, tree.root()]]);
  const wanted = new Set(checkpoints.map((c) => c.size));
  // A `--since` export: the tree of the events before it, as its header names it.
  let resumed: { size: number } | undefined;
  const onHeader = (h: ExportHeader) => {
    if (h.from_seq === 1 || h.frontier === undefined) return;
    tree = IncrementalTree.fromFrontier(h.from_seq - 1, h.frontier.map(fromBase64));
    resumed = { size: tree.size };
    rootAt.set(tree.size, tree.root());
  };
  // Each older checkpoint's proof is the roots of disjoint leaf ranges: fill them as leaves pass.
  const proofs = checkpoints.map((c) => {
    const ranges = consistencyProofRanges(Math.min(c.size, newest.size), newest.size);
    return { checkpoint: c, parts: ranges.map((r) => ({ range: r, tree: new IncrementalTree() })) };
  });
  const inRange = (i: number, [start, end]: LeafRange) => i >= start && i < end;

  const chain = await verifyExport(lines, {
    onHeader,
    onEvent: (e: StoredEvent) => {
      const index = tree.size;
      const leaf = eventLeafHash(e);
      tree.appendLeafHash(leaf);
      if (wanted.has(tree.size)) rootAt.set(tree.size, tree.root());
      for (const p of proofs)
        for (const part of p.parts) if (inRange(index, part.range)) part.tree.appendLeafHash(leaf);
    },
  });
  if (!chain.ok) return { ok: false, problem: describeExportResult(chain) };
  if (resumed) return checkResumed(chain, checkpoints, rootAt, tree, resumed.size);
  if (chain.fromSeq !== 1) {
    return {
      ok: false,
      uncheckable: true,
      problem:
        `the export starts at seq ${chain.fromSeq}, and a checkpoint covers the log from seq 1: only an export from the start of the log (pnpm audit:export without --since, and any archives before it with --archive) can be checked against one. ` +
        `Its ${chain.events} events chain from seq ${chain.fromSeq} to head ${chain.head}, but nothing before seq ${chain.fromSeq} is verified (a --since export and one that lost its first events look alike).`,
    };
  }
  for (const c of checkpoints) {
    const root = rootAt.get(c.size);
    if (root === undefined) {
      return {
        ok: false,
        problem: `${c.file}: covers ${c.size} events, the export has only ${chain.events}`,
      };
    }
    if (!equalHash(root, c.rootHash)) {
      return {
        ok: false,
        problem: `${c.file}: the export's first ${c.size} events have root ${toBase64(root)}, the checkpoint signed ${toBase64(c.rootHash)}`,
      };
    }
  }
  const out = [`ok: ${chain.events} events, head ${chain.head}, tree root ${toBase64(tree.root())}`];
  out.push(`checkpoint ${newest.file}: size ${newest.size} root ${toBase64(newest.rootHash)} matches`);
  for (const p of proofs) {
    if (p.checkpoint === newest) continue;
    const proof = p.parts.map((part) => part.tree.root());
    const { size, rootHash, file } = p.checkpoint;
    if (!verifyConsistency(size, newest.size, rootHash, newest.rootHash, proof)) {
      return { ok: false, problem: `${file}: not consistent with ${newest.file}` };
    }
    out.push(
      `checkpoint ${file}: size ${size} is consistent with size ${newest.size} (${proof.length}-hash proof)`,
    );
  }
  return { ok: true, events: chain.events, root: tree.root(), lines: out };
}

/**
 * An export resumed from its header's frontier (`before` leaves ahead of it): each checkpoint at
 * least that large must have the root recomputed from the frontier and the exported leaves; one
 * older than the export's start cannot be checked with it.
 */
function checkResumed(
  chain: Extract<ExportVerifyResult, { ok: true }>,
  checkpoints: readonly KeptCheckpoint[],
  rootAt: ReadonlyMap<number, Hash>,
  tree: IncrementalTree,
  before: number,
): TreeVerifyResult {
  const older = checkpoints.filter((c) => c.size < before);
  if (older.length > 0) {
    const c = older.reduce((a, b) => (b.size < a.size ? b : a));
    return {
      ok: false,
      uncheckable: true,
      problem:
        `${c.file} covers ${c.size} events and the export starts at seq ${chain.fromSeq}: it cannot show that the ${before - c.size} events between them extend that checkpoint. ` +
        `Export from before that checkpoint's time (an earlier --since, or none). The export's own ${chain.events} events chain from seq ${chain.fromSeq} to head ${chain.head}.`,
    };
  }
  const out = [
    `ok: ${chain.events} events from seq ${chain.fromSeq} (the tree of the ${before} before them as the header names it), head ${chain.head}, tree root ${toBase64(tree.root())}`,
  ];
  for (const c of [...checkpoints].sort((a, b) => b.size - a.size)) {
    const root = rootAt.get(c.size);
    if (root === undefined) {
      return { ok: false, problem: `${c.file}: covers ${c.size} events, the export ends at ${tree.size}` };
    }
    if (!equalHash(root, c.rootHash)) {
      return {
        ok: false,
        problem: `${c.file}: the tree of the export's first ${c.size} events (the header's frontier of ${before}, then the export's events) has root ${toBase64(root)}, the checkpoint signed ${toBase64(c.rootHash)}`,
      };
    }
    out.push(`checkpoint ${c.file}: size ${c.size} root ${toBase64(c.rootHash)} matches`);
  }
  // Say how much of the export a checkpoint vouches for: one of exactly `before` events vouches
  // for the tree the export resumes from, and none of its events (the log grew since, as ever).
  const covered = Math.max(...checkpoints.map((c) => c.size)) - before;
  out.push(
    covered === 0
      ? `none of the export's ${chain.events} events is covered by a checkpoint yet (the newest ends where the export starts); keep a later one to check them`
      : `the checkpoints cover ${covered} of the export's ${chain.events} events (seq ${chain.fromSeq}..${chain.fromSeq + covered - 1})`,
  );
  return { ok: true, events: chain.events, root: tree.root(), lines: out };
}

/** KEY is a verifier-key string, or the path of a file that holds one. */
async function readKey(value: string, env: NodeJS.ProcessEnv): Promise<VerifierKey> {
  try {
    return parseVerifierKey(value);
  } catch (err) {
    // A mistyped key is not a missing file: say what is wrong with it.
    if (!existsSync(userPath(value, env)))
      throw new Error(`--key ${value}: ${(err as Error).message}, and no file has that name`);
    return parseVerifierKey(await readFile(userPath(value, env), "utf8"));
  }
}

/** The CLI: returns the exit code (0 ok, 1 broken or not verified, 2 usage or unreadable input). */
export async function runVerifyCli(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  io: { stdout: Writable; stderr: Writable },
): Promise<number> {
  let values: {
    key?: string | undefined;
    checkpoint?: string[] | undefined;
    archive?: string[] | undefined;
    help?: boolean | undefined;
  };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv.filter((a) => a !== "--"),
      options: {
        key: { type: "string" },
        checkpoint: { type: "string", multiple: true },
        archive: { type: "string", multiple: true },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: true,
    }));
  } catch (err) {
    io.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    return 2;
  }
  const cpFiles = values.checkpoint ?? [];
  if (values.help || positionals.length !== 1 || cpFiles.length > 0 !== (values.key !== undefined)) {
    io.stderr.write(USAGE);
    return values.help ? 0 : 2;
  }
  const path = positionals[0] === "-" ? "-" : userPath(positionals[0] as string, env);

  let key: VerifierKey | undefined;
  const checkpoints: KeptCheckpoint[] = [];
  try {
    if (values.key !== undefined) key = await readKey(values.key, env);
    for (const file of cpFiles) {
      const text = await readFile(userPath(file, env));
      const opened = key && verifyCheckpoint(text, key);
      if (!opened?.ok) {
        io.stdout.write(`broken: ${file}: not a checkpoint signed by ${key?.name} (${opened?.reason})\n`);
        return 1;
      }
      checkpoints.push({ ...opened.checkpoint, file });
    }
  } catch (err) {
    io.stderr.write(`audit:verify-export: ${err instanceof Error ? err.message : String(err)}\n`);
    return 2;
  }
  const origins = new Set(checkpoints.map((c) => c.origin));
  if (origins.size > 1) {
    io.stdout.write(`broken: the checkpoints name different logs: ${[...origins].join(", ")}\n`);
    return 1;
  }

  // Archives first, in seq order (their names sort so), then the live export.
  const archives = (values.archive ?? []).map((f) => userPath(f, env)).sort(byBaseName);
  const input = () =>
    archives.length === 0
      ? readLines(path)
      : stitchExports([...archives.map((f) => () => readLines(f)), () => readLines(path)]);
  try {
    if (checkpoints.length === 0) {
      const result = archives.length === 0 ? await verifyExportFile(path) : await verifyExport(input());
      io.stdout.write(`${describeExportResult(result)}\n`);
      return result.ok ? 0 : 1;
    }
    const result = await verifyExportAgainst(input(), checkpoints);
    if (result.ok) {
      io.stdout.write(`${result.lines.join("\n")}\n`);
      return 0;
    }
    if (result.uncheckable) {
      io.stdout.write(`not verified against the checkpoints: ${result.problem}\n`);
      return 1;
    }
    io.stdout.write(`broken: ${result.problem}\n`);
    return 1;
  } catch (err) {
    if (err instanceof StitchError) {
      io.stdout.write(`broken: ${err.message}\n`);
      return 1;
    }
    io.stderr.write(
      `audit:verify-export: cannot read ${path}: ${err instanceof Error ? err.message : String(err)}\n`,
    );
    return 2;
  }
}

const byBaseName = (a: string, b: string): number => basename(a).localeCompare(basename(b));

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
