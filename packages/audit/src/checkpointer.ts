import { createPublicKey, randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { chmod, link, mkdir, open, readdir, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Clock } from "@phaselock/core";
import { type Db, schema } from "@phaselock/db";
import { desc, lt, sql } from "drizzle-orm";
import { consistencyProof, equalHash, IncrementalTree, inclusionProof, rootOf, toBase64 } from "./merkle.ts";
import { keyId, type NoteSigner, signCheckpoint, type VerifierKey, verifyCheckpoint } from "./note.ts";
import {
  CheckpointRefusedError,
  readCheckedLeafHashes,
  readLeafHashes,
  resumeSignedCheckpoint,
  treeSize,
} from "./store.ts";

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

/** Stored checkpoints this log did not sign looked past, at most, for the newest it did. */
const MAX_UNSIGNED = 1_000;

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

/** A checkpoint this log signed, known from outside the database. */
interface Pinned {
  size: number;
  note: string;
  root: Uint8Array;
  /** As served when nothing newer is signed. */
  cp: StoredCheckpoint;
}

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
  /**
   * The newest checkpoint this instance knows the log signed, from outside the database: read
   * from `dir` on the first run, then each one it signs. The database must hold it (or a newer
   * one) before anything is signed: an owner who deleted the newest rows and rewrote what they
   * covered would otherwise get this key to sign a fork from an older checkpoint.
   */
  #pinned: Pinned | undefined;

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
        // Under the lock: another instance sharing the folder may have signed since.
        const pinned = await this.#currentPin();
        const latest = await this.#newestSigned(tx);
        // What to extend: the newest signed row the held checkpoint does not postdate.
        const base =
          pinned && latest && latest.treeSize > pinned.size
            ? await this.#newestSigned(tx, pinned.size + 1)
            : latest;
        if (pinned && base?.treeSize === pinned.size && base.note !== pinned.note) {
          throw new CheckpointRefusedError(
            `the database holds another checkpoint of size ${pinned.size} than the one this log signed (${this.#pinnedAt()}): the log was forked; not signing`,
          );
        }
        const size = await treeSize(tx);
        if (pinned && size < pinned.size) {
          throw new CheckpointRefusedError(
            `the audit log holds ${size} events but this log signed a checkpoint of size ${pinned.size} (${this.#pinnedAt()}): events it covers were removed; not signing`,
          );
        }
        if (latest && latest.treeSize > size) {
          throw new CheckpointRefusedError(
            `the audit log holds ${size} events but a checkpoint of size ${latest.treeSize} was signed: events it covers were removed (a partition detached or emptied?); not signing`,
          );
        }
        // Roots the tree rebuilt from `base` must pass: the held checkpoint when the database's
        // newest signed one is older (its row removed, or never stored: another row held its
        // size), and a newer stored one (signed by an instance that held less) when there is.
        const through: Pinned[] = [];
        if (pinned && (base?.treeSize ?? 0) < pinned.size) through.push(pinned);
        if (latest && latest !== base) through.push(this.#pin(latest.treeSize, latest.note)!);
        const tree = base ? this.#resume(base) : new IncrementalTree();
        const held = pinned && pinned.size >= (latest?.treeSize ?? 0) ? pinned : undefined;
        if (through.length === 0 && (base?.treeSize ?? 0) >= size) {
          if (base) return { created: false, cp: base };
          return null;
        }
        if (base) await checkTail(tx, tree, base.treeSize);
        for (let from = tree.size; from < size; from += LEAF_PAGE) {
          const to = Math.min(size, from + LEAF_PAGE);
          // Each leaf computed from its event (and checked against the stored one, which
          // proofs are served from): a leaf_hash column written wrong is never signed.
          const page = await readCheckedLeafHashes(tx, from, to);
          // A missing seq means a row was removed: signing over the gap would bless it.
          if (page.length !== to - from)
            throw new CheckpointRefusedError(`audit tree has a gap in leaves ${from}..${to}`);
          for (const h of page) {
            tree.appendLeafHash(h);
            const check = through.find((t) => t.size === tree.size);
            if (check && !equalHash(tree.root(), check.root)) {
              throw new CheckpointRefusedError(
                check === pinned
                  ? `the stored events do not extend checkpoint ${check.size} this log signed (${this.#pinnedAt()}): events it covers were rewritten; not signing`
                  : `the stored checkpoint of size ${check.size} does not extend checkpoint ${pinned?.size} this log signed (${this.#pinnedAt()}): the log was forked; not signing`,
              );
            }
          }
        }
        // Nothing newer than what was signed: the newest signed checkpoint, now checked.
        if (latest && latest.treeSize >= size) return { created: false, cp: latest };
        if (held && held.size >= size) {
          // Signed but not in the database (its row removed, or never stored): put it back, so
          // the next run extends it instead of rebuilding the tree again.
          await tx
            .insert(auditCheckpoints)
            .values({ ...held.cp, frontier: tree.frontier().map(toBase64) })
            .onConflictDoNothing();
          return { created: false, cp: held.cp };
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
        // A row someone else put at this size (the services' role may insert) is not replaced:
        // the signed checkpoint still goes to the folder, this instance's pin and the caller.
        await tx.insert(auditCheckpoints).values(row).onConflictDoNothing();
        // In the folder before the commit: a second note for one size throws and rolls it back.
        if (this.#dir !== undefined) await writeCheckpointFile(this.#dir, row);
        return { created: true, cp: row };
      },
      { isolationLevel: "read committed" },
    );
    if (!result) return null;
    const { treeSize: n, rootHash, note, createdAt } = result.cp;
    const cp = { treeSize: n, rootHash, note, createdAt };
    if (!this.#pinned || n > this.#pinned.size) this.#pinned = this.#pin(n, note, createdAt) ?? this.#pinned;
    return cp;
  }

  /**
   * The newest checkpoint this log signed that this instance knows from outside the database
   * (its pin, or a newer note in its folder), for `verifyStored`: an owner who deletes the
   * checkpoint rows too cannot make verify forget it. Empty when none, or the folder is unreadable.
   */
  async held(): Promise<{ treeSize: number; note: string }[]> {
    const pin = await this.#currentPin().catch(() => this.#pinned ?? null);
    return pin ? [{ treeSize: pin.size, note: pin.note }] : [];
  }

  /** The newer of this instance's pin and the newest note in its folder (which others may share). */
  async #currentPin(): Promise<Pinned | null> {
    const fromFolder = await this.#newestFile(this.#pinned?.size ?? -1);
    if (fromFolder && (!this.#pinned || fromFolder.size > this.#pinned.size)) this.#pinned = fromFolder;
    return this.#pinned ?? null;
  }

  /**
   * The stored checkpoint of the largest size whose note this log signed for that size. Rows it
   * did not sign (the services' role can insert them) are passed over, never extended nor
   * served; more than MAX_UNSIGNED of them above the newest signed one stop the run.
   */
  async #newestSigned(
    tx: Db,
    under = Number.MAX_SAFE_INTEGER,
  ): Promise<typeof auditCheckpoints.$inferSelect | undefined> {
    let below = under;
    for (let looked = 0; looked < MAX_UNSIGNED; looked += 100) {
      const rows = await tx
        .select()
        .from(auditCheckpoints)
        .where(lt(auditCheckpoints.treeSize, below))
        .orderBy(desc(auditCheckpoints.treeSize))
        .limit(100);
      for (const row of rows) if (this.#signedBy(row)) return row;
      if (rows.length < 100) return undefined;
      below = rows.at(-1)!.treeSize;
    }
    throw new CheckpointRefusedError(
      `more than ${MAX_UNSIGNED} stored checkpoints this log did not sign; not signing`,
    );
  }

  #signedBy(row: { treeSize: number; note: string }): boolean {
    return this.#pin(row.treeSize, row.note) !== null;
  }

  /** The checkpoint `note` as a pin, when this log signed it for `size`; else null. */
  #pin(size: number, note: string, createdAt = this.#clock.now()): Pinned | null {
    const opened = verifyCheckpoint(note, this.#verifier, this.#signer.name);
    if (!opened.ok || opened.checkpoint.size !== size) return null;
    const root = opened.checkpoint.rootHash;
    return { size, note, root, cp: { treeSize: size, rootHash: toBase64(root), note, createdAt } };
  }

  #pinnedAt(): string {
    return this.#dir === undefined ? "held by this process" : `kept in ${this.#dir}`;
  }

  /** The largest `<size>.note` in `dir` above `above` this log signed for that size, or null. */
  async #newestFile(above: number): Promise<Pinned | null> {
    if (this.#dir === undefined) return null;
    const dir = this.#dir;
    const sizes = (await noteSizes(dir)).filter((n) => n > above);
    for (const size of sizes) {
      const note = await readNoteFile(dir, join(dir, `${size}.note`));
      const pin = note === null ? null : this.#pin(size, note);
      if (pin) return pin;
    }
    return null;
  }

  /**
   * The tree of the latest stored checkpoint, to extend. Nothing in the row is trusted but its
   * signed note: a frontier (or size) someone rewrote in the database would otherwise have this
   * key sign a root that does not extend the checkpoints auditors hold — a fork, without the key.
   */
  #resume(latest: typeof auditCheckpoints.$inferSelect): IncrementalTree {
    const resumed = resumeSignedCheckpoint(latest, this.#verifier);
    if (resumed.ok) return resumed.tree;
    throw new CheckpointRefusedError(
      resumed.reason === "unsigned"
        ? `the stored checkpoint of size ${latest.treeSize} is not one this log signed`
        : `the stored frontier of checkpoint ${latest.treeSize} does not match its signed root`,
    );
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
    throw new CheckpointRefusedError(
      `the audit log no longer holds the leaves checkpoint ${n} signed (seq ${n - low + 1}..${n} differ): events were removed and others appended in their place; not signing`,
    );
  }
}

/**
 * The checkpoint folder cannot be written (permissions, a read-only filesystem, a full disk): no
 * checkpoint is signed until it can, since a note is in the folder before its row commits. The
 * token service refuses to start on it and answers `503 unavailable` while it lasts.
 */
export class CheckpointFolderError extends Error {
  override readonly name = "CheckpointFolderError";
  readonly code = "checkpoint_folder";
  readonly dir: string;
  constructor(dir: string, cause: unknown) {
    const errno = (cause as NodeJS.ErrnoException).code;
    super(
      `the audit checkpoint folder ${dir} (AUDIT_CHECKPOINT_DIR) cannot be written${errno ? ` (${errno})` : ""}: ` +
        "no checkpoint can be signed until it can; make it writable by this process (in a container, " +
        "mount a volume there) or point AUDIT_CHECKPOINT_DIR at a folder that is",
      { cause },
    );
    this.dir = dir;
  }
}

/** Runs one step on the folder, reporting a filesystem failure as a {@link CheckpointFolderError}. */
async function onFolder<T>(dir: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw typeof (err as NodeJS.ErrnoException).code === "string" ? new CheckpointFolderError(dir, err) : err;
  }
}

/**
 * Creates `dir` if need be and makes it 0700. A folder this process does not own (the root of a
 * volume the platform made group-writable, as Kubernetes' fsGroup does) cannot be chmod-ed
 * (EPERM): its mode is the platform's, and writing into it is what counts.
 */
async function prepareFolder(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EPERM") throw err;
  });
}

/**
 * A stored note's text, or null when `file` is not a regular file (a symlink, a FIFO, a folder
 * someone put under a note's name is passed over, never followed or waited on).
 */
async function readNoteFile(dir: string, file: string): Promise<string | null> {
  return onFolder(dir, async () => {
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ELOOP" || code === "ENOENT" || code === "ENXIO") return null;
      throw err;
    }
    try {
      if (!(await handle.stat()).isFile()) return null;
      return await handle.readFile("utf8");
    } finally {
      await handle.close();
    }
  });
}

/** The sizes of the `<size>.note` names in `dir`, largest first; none for a folder that does not exist. */
async function noteSizes(dir: string): Promise<number[]> {
  const names = await onFolder(dir, () =>
    readdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT") return [];
      throw err;
    }),
  );
  return names
    .map((name) => /^(0|[1-9]\d*)\.note$/.exec(name)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => b - a);
}

/**
 * The sizes of the notes in `dir` (`<size>.note`, regular files only) that name `origin` as their
 * log, whoever signed them, largest first. A folder that does not exist holds none.
 */
export async function folderNoteSizes(dir: string, origin: string): Promise<number[]> {
  const found: number[] = [];
  for (const size of await noteSizes(dir)) {
    const note = await readNoteFile(dir, join(dir, `${size}.note`));
    if (note?.startsWith(`${origin}\n`)) found.push(size);
  }
  return found;
}

/**
 * Moves every note (`<size>.note`) in `dir` into a new subfolder `superseded-<time>-<random>` and
 * answers how many, with the subfolder: for a new log starting where another's notes lie (an
 * earlier database, another origin), whose sizes would collide with them. Kept, never removed:
 * they are that other log's record. A folder that does not exist holds none.
 */
export async function supersedeNotes(dir: string, now: Date): Promise<{ moved: number; to: string }> {
  const notes = (await noteSizes(dir)).map((size) => `${size}.note`);
  const to = join(
    dir,
    `superseded-${now.toISOString().replaceAll(":", "-")}-${randomBytes(3).toString("hex")}`,
  );
  if (notes.length === 0) return { moved: 0, to };
  await onFolder(dir, async () => {
    await mkdir(to, { mode: 0o700 });
    for (const name of notes) await rename(join(dir, name), join(to, name));
  });
  return { moved: notes.length, to };
}

/** Creates `dir` (0700) if need be and publishes a file in it as a note is: proof, at start, that notes can land. */
export async function ensureCheckpointFolder(dir: string): Promise<void> {
  await onFolder(dir, async () => {
    await prepareFolder(dir);
    // What a note's publication does: a file of its own name, then a hard link (some network
    // filesystems have none, and a note is never renamed over another).
    const probe = join(dir, `.probe-${randomBytes(8).toString("hex")}`);
    try {
      await writeFile(probe, "", { mode: 0o600, flag: "wx" });
      await link(probe, `${probe}.link`);
    } finally {
      await rm(probe, { force: true });
      await rm(`${probe}.link`, { force: true });
    }
  });
}

/**
 * Writes `<dir>/<size>.note` (dir 0700, file 0600), atomically so a reader never sees half a note,
 * and never over another: a note already there for that size is left as it is, and one that
 * differs (a second root signed for one size: a fork) throws.
 */
export async function writeCheckpointFile(dir: string, cp: StoredCheckpoint): Promise<string> {
  const file = join(dir, `${cp.treeSize}.note`);
  // A name of its own (instances sharing the folder may all be pid 1), created, never truncated:
  // once linked it is the published note's inode until it is removed.
  const tmp = `${file}.tmp-${randomBytes(8).toString("hex")}`;
  try {
    await onFolder(dir, async () => {
      await prepareFolder(dir);
      await writeFile(tmp, cp.note, { mode: 0o600, flag: "wx" });
      await chmod(tmp, 0o600);
    });
    // link(2) fails when the name exists: unlike rename, it never replaces a note.
    const linked = await onFolder(dir, () =>
      link(tmp, file).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code === "EEXIST") return false;
          throw err;
        },
      ),
    );
    if (!linked && (await readNoteFile(dir, file)) !== cp.note) {
      throw new CheckpointRefusedError(
        `${file} holds another checkpoint of size ${cp.treeSize}: the log was forked; not replaced`,
      );
    }
  } finally {
    await rm(tmp, { force: true });
  }
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
