import { createPublicKey } from "node:crypto";
import { chmod, mkdir, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Clock } from "@phaselock/core";
import { type Db, schema } from "@phaselock/db";
import { desc, sql } from "drizzle-orm";
import { consistencyProof, equalHash, IncrementalTree, inclusionProof, rootOf, toBase64 } from "./merkle.ts";
import { keyId, type NoteSigner, signCheckpoint, type VerifierKey, verifyCheckpoint } from "./note.ts";
import { readLeafHashes, treeSize } from "./store.ts";

const { auditArchives, auditCheckpoints } = schema;

/**
 * Key of the transaction-scoped advisory lock a checkpointer signs under: token-service instances
 * on one database take turns, and each extends the checkpoint the previous one stored, so the
 * log never forks. Distinct from the append lock, so signing never stalls appends.
 */
export const CHECKPOINT_LOCK_KEY = 7_305_512_018;

/** At least this often while events arrive (the contract's bound). */
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 10_000;

const LEAF_PAGE = 10_000;

/** The newest leaves re-read before extending a checkpoint are at most this many (see #checkTail). */
const TAIL_CHECK_MAX = 4_096;

export interface StoredCheckpoint {
  treeSize: number;
  /** Base64, as in the note. */
  rootHash: string;
  /** The signed note (C2SP signed-note around a tlog-checkpoint body). */
  note: string;
  createdAt: Date;
}

/** Timer functions, injectable so tests drive the schedule. */
export interface CheckpointTimers {
  setInterval(fn: () => void, ms: number): unknown;
  clearInterval(handle: unknown): void;
}

const realTimers: CheckpointTimers = {
  setInterval: (fn, ms) => {
    const t = setInterval(fn, ms);
    // Never keeps the process alive: shutdown calls stop().
    t.unref();
    return t;
  },
  clearInterval: (h) => clearInterval(h as NodeJS.Timeout),
};

export interface CheckpointerOptions {
  db: Db;
  /** Signs as the log: its name is the checkpoint origin. */
  signer: NoteSigner;
  clock: Clock;
  /** Where each signed checkpoint is also written (`<dir>/<tree size>.note`); none when unset. */
  dir?: string | undefined;
  intervalMs?: number | undefined;
  timers?: CheckpointTimers | undefined;
  onError?: ((err: unknown) => void) | undefined;
}

/** The latest stored checkpoint, or null before the first. */
export async function latestCheckpoint(db: Db): Promise<StoredCheckpoint | null> {
  const [row] = await db
    .select({
      treeSize: auditCheckpoints.treeSize,
      rootHash: auditCheckpoints.rootHash,
      note: auditCheckpoints.note,
      createdAt: auditCheckpoints.createdAt,
    })
    .from(auditCheckpoints)
    .orderBy(desc(auditCheckpoints.treeSize))
    .limit(1);
  return row ?? null;
}

/**
 * Signs checkpoints of the audit tree: `checkpoint()` signs one when the log has grown since the
 * latest stored checkpoint, folding only the new leaves into that checkpoint's frontier; `start()`
 * does so every `intervalMs`.
 */
export class Checkpointer {
  readonly #db: Db;
  readonly #signer: NoteSigner;
  readonly #verifier: VerifierKey;
  readonly #clock: Clock;
  readonly #dir: string | undefined;
  readonly #intervalMs: number;
  readonly #timers: CheckpointTimers;
  readonly #onError: (err: unknown) => void;
  #handle: unknown;
  #running: Promise<StoredCheckpoint | null> | null = null;

  constructor(opts: CheckpointerOptions) {
    this.#db = opts.db;
    this.#signer = opts.signer;
    const publicKey = createPublicKey(opts.signer.privateKey);
    this.#verifier = { name: opts.signer.name, keyId: keyId(opts.signer.name, publicKey), publicKey };
    this.#clock = opts.clock;
    this.#dir = opts.dir;
    this.#intervalMs = opts.intervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
    this.#timers = opts.timers ?? realTimers;
    this.#onError = opts.onError ?? (() => {});
  }

  get origin(): string {
    return this.#signer.name;
  }

  start(): void {
    if (this.#handle !== undefined) return;
    this.#handle = this.#timers.setInterval(() => {
      this.checkpoint().catch(this.#onError);
    }, this.#intervalMs);
  }

  async stop(): Promise<void> {
    if (this.#handle !== undefined) this.#timers.clearInterval(this.#handle);
    this.#handle = undefined;
    await this.#running?.catch(() => {});
  }

  /**
   * Signs and stores a checkpoint of the whole log if it grew; returns the latest checkpoint
   * (new or not), or null while the log is empty. One run at a time per instance.
   */
  checkpoint(): Promise<StoredCheckpoint | null> {
    this.#running ??= this.#run().finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  async #run(): Promise<StoredCheckpoint | null> {
    const result = await this.#db.transaction(
      async (tx) => {
        await tx.execute(sql.raw(`select pg_advisory_xact_lock(${CHECKPOINT_LOCK_KEY})`));
        const [latest] = await tx
          .select()
          .from(auditCheckpoints)
          .orderBy(desc(auditCheckpoints.treeSize))
          .limit(1);
        const size = await treeSize(tx);
        const tree = latest ? this.#resume(latest) : new IncrementalTree();
        if (latest && latest.treeSize > size) {
          throw new Error(
            `the audit log holds ${size} events but a checkpoint of size ${latest.treeSize} was signed: events it covers were removed (a partition detached or emptied?); not signing`,
          );
        }
        if (latest && latest.treeSize >= size) return { created: false, cp: latest };
        if (latest) await checkTail(tx, tree, latest.treeSize);
        if (!latest && size === 0) return null;
        for (let from = tree.size; from < size; from += LEAF_PAGE) {
          const to = Math.min(size, from + LEAF_PAGE);
          const page = await readLeafHashes(tx, from, to);
          // A missing seq means a row was removed: signing over the gap would bless it.
          if (page.length !== to - from) throw new Error(`audit tree has a gap in leaves ${from}..${to}`);
          for (const h of page) tree.appendLeafHash(h);
        }
        const root = tree.root();
        const note = signCheckpoint({ origin: this.#signer.name, size, rootHash: root }, this.#signer);
        const row = {
          treeSize: size,
          rootHash: toBase64(root),
          note,
          frontier: tree.frontier().map(toBase64),
          createdAt: this.#clock.now(),
        };
        await tx.insert(auditCheckpoints).values(row);
        return { created: true, cp: row };
      },
      { isolationLevel: "read committed" },
    );
    if (!result) return null;
    const { treeSize: n, rootHash, note, createdAt } = result.cp;
    const cp = { treeSize: n, rootHash, note, createdAt };
    if (result.created && this.#dir !== undefined) await writeCheckpointFile(this.#dir, cp);
    return cp;
  }

  /**
   * The tree of the latest stored checkpoint, to extend. Nothing in the row is trusted but its
   * signed note: a frontier (or size) someone rewrote in the database would otherwise have this
   * key sign a root that does not extend the checkpoints auditors hold — a fork, without the key.
   */
  #resume(latest: typeof auditCheckpoints.$inferSelect): IncrementalTree {
    const opened = verifyCheckpoint(latest.note, this.#verifier, this.#signer.name);
    if (!opened.ok || opened.checkpoint.size !== latest.treeSize) {
      throw new Error(`the stored checkpoint of size ${latest.treeSize} is not one this log signed`);
    }
    const tree = IncrementalTree.fromFrontier(
      latest.treeSize,
      latest.frontier.map((h) => new Uint8Array(Buffer.from(h, "base64"))),
    );
    if (!equalHash(tree.root(), opened.checkpoint.rootHash)) {
      throw new Error(`the stored frontier of checkpoint ${latest.treeSize} does not match its signed root`);
    }
    return tree;
  }
}

/**
 * Before extending checkpoint `n`: the stored leaves of its smallest perfect subtree (the newest
 * 1, 2, 4… leaves, at most TAIL_CHECK_MAX) must still hash to that subtree's frontier root. The
 * newest events removed (a partition detached, rows deleted by an owner) and others appended at
 * their seqs would otherwise be folded in as if they followed the signed ones: a checkpoint of a
 * tree the database does not hold. Skipped when those leaves were archived.
 */
async function checkTail(tx: Db, tree: IncrementalTree, n: number): Promise<void> {
  let low = 1;
  while (n % (low * 2) === 0) low *= 2;
  if (low > TAIL_CHECK_MAX) return;
  const [archived] = await tx
    .select({ toSeq: auditArchives.toSeq })
    .from(auditArchives)
    .orderBy(desc(auditArchives.toSeq))
    .limit(1);
  if (n - low < (archived?.toSeq ?? 0)) return;
  const leaves = await readLeafHashes(tx, n - low, n);
  const last = tree.frontier().at(-1);
  if (leaves.length !== low || last === undefined || !equalHash(rootOf(leaves), last)) {
    throw new Error(
      `the audit log no longer holds the leaves checkpoint ${n} signed (seq ${n - low + 1}..${n} differ): events were removed and others appended in their place; not signing`,
    );
  }
}

/** Writes `<dir>/<size>.note` (dir 0700, file 0600), atomically so a reader never sees half a note. */
export async function writeCheckpointFile(dir: string, cp: StoredCheckpoint): Promise<string> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const file = join(dir, `${cp.treeSize}.note`);
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, cp.note, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
  return file;
}

/** A proof request that does not fit the tree: the route answers 400 validation. */
export class ProofRangeError extends RangeError {
  override readonly name = "ProofRangeError";
}

const storedReader = (db: Db) => async (start: number, end: number) => {
  const leaves = await readLeafHashes(db, start, end);
  // A short read is an archived (or removed) stretch: no proof from a partial table.
  if (leaves.length !== end - start) {
    throw new ProofRangeError(
      `leaves ${start}..${end - 1} are not all in the database (archived: see docs/audit.md)`,
    );
  }
  return leaves;
};

/** RFC 9162 consistency proof between tree sizes `from` and `to` of the stored log. */
export async function storedConsistencyProof(db: Db, from: number, to: number): Promise<Uint8Array[]> {
  if (from > to) throw new ProofRangeError("from must not exceed to");
  const size = await treeSize(db);
  if (to > size) throw new ProofRangeError(`the tree has ${size} leaves`);
  return consistencyProof(storedReader(db), from, to);
}

/** RFC 9162 inclusion proof of leaf `index` (the event with seq index + 1) in the tree of `size`. */
export async function storedInclusionProof(db: Db, index: number, size: number): Promise<Uint8Array[]> {
  if (index >= size) throw new ProofRangeError("index must be below size");
  const stored = await treeSize(db);
  if (size > stored) throw new ProofRangeError(`the tree has ${stored} leaves`);
  return inclusionProof(storedReader(db), index, size);
}
