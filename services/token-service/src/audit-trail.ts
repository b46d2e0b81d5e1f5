import { randomBytes } from "node:crypto";
import { basename } from "node:path";
import {
  appendEvents,
  CHECKPOINT_LOCK_KEY,
  Checkpointer,
  type CheckpointTimers,
  ed25519FromSeed,
  ensureAuditPartitions,
  ensureCheckpointFolder,
  folderNoteSizes,
  latestCheckpoint,
  type NoteSigner,
  parseSignerKey,
  type StoredCheckpoint,
  signerKeyString,
  supersedeNotes,
  verifierKeyString,
} from "@phaselock/audit";
import type { Clock } from "@phaselock/core";
import { type Db, schema } from "@phaselock/db";
import { decryptPrivateKey, encryptPrivateKey } from "@phaselock/tokens";
import { eq, gte, sql } from "drizzle-orm";
import type { AuditTrail } from "./context.ts";

const { auditCheckpoints, auditEvents, auditKeys } = schema;

/** Thrown at start when checkpoints exist but the key that signed them is not in `audit_keys`. */
export class AuditKeyMissingError extends Error {
  readonly code = "audit_key_missing";
  constructor(origin: string, known: readonly string[] = []) {
    super(
      `audit checkpoints exist but audit_keys has no key for origin "${origin}": ` +
        "the row was deleted, or AUDIT_ORIGIN or TOKEN_SERVICE_URL changed (the origin defaults to " +
        "TOKEN_SERVICE_URL's host and path, and that URL to TOKEN_SERVICE_PORT on HOST). Refusing to " +
        "create a new audit key (it would start a log that no held checkpoint verifies): restore the " +
        "audit_keys row from a backup, or set TOKEN_SERVICE_URL (the links' iss) or AUDIT_ORIGIN back " +
        `to what the log was started under${known.length > 0 ? ` (audit_keys holds: ${known.join(", ")})` : ""}.`,
    );
    this.name = "AuditKeyMissingError";
  }
}

/**
 * Thrown at start when `audit_keys` has no key for the origin but the checkpoint folder holds notes
 * of that log: the key row and the checkpoint rows were both removed (an owner rewriting the log
 * would have a new key sign a new history that the folder's notes no longer check).
 */
export class AuditKeyMissingFromFolderError extends Error {
  readonly code = "audit_key_missing";
  constructor(origin: string, dir: string, newest: number) {
    super(
      `the audit checkpoint folder ${dir} (AUDIT_CHECKPOINT_DIR) holds checkpoints of the log "${origin}" ` +
        `(the newest of ${newest} events), but audit_keys has no key for it and audit_checkpoints no row: ` +
        "refusing to create a new audit key (verify would no longer check the log against those notes). " +
        "Restore the audit_keys and audit_checkpoints rows from a backup, or, to start a new log on " +
        "purpose, move the folder aside and keep it as the record of the old one.",
    );
    this.name = "AuditKeyMissingFromFolderError";
  }
}

/** An earlier log's notes a new log moved aside: how many, where, the newest of this origin's size. */
export interface Superseded {
  moved: number;
  to: string;
  newest: number | null;
}

/**
 * The log's checkpoint key: generated once per origin by whichever instance starts first (the
 * primary key settles a race), stored with its private half encrypted under the KEK like the
 * link signing keys, and loaded by every instance.
 */
export async function loadAuditSigner(
  db: Db,
  kek: Uint8Array,
  origin: string,
  /** the checkpoint folder: notes of this log covering the database's events mean the log is not new */
  dir?: string | undefined,
): Promise<{ signer: NoteSigner; verifierKey: string; superseded?: Superseded }> {
  let superseded: Superseded | undefined;
  const read = async () =>
    (await db.select().from(auditKeys).where(eq(auditKeys.origin, origin)).limit(1))[0];
  let row = await read();
  if (!row) {
    // A new key is right only for a new log. With checkpoints already signed, a missing key means
    // its row was deleted (or AUDIT_ORIGIN changed): a fresh key would sign checkpoints no held
    // one can be checked against, so refuse to start and say what to restore.
    const [signed] = await db.select({ size: auditCheckpoints.treeSize }).from(auditCheckpoints).limit(1);
    if (signed) {
      const known = await db.select({ origin: auditKeys.origin }).from(auditKeys).orderBy(auditKeys.origin);
      throw new AuditKeyMissingError(
        origin,
        known.map((k) => k.origin),
      );
    }
    // Nor when the database holds every event the folder's newest note of this log covers: it is
    // that log, its key's row and checkpoint rows removed (an owner rewriting it), and a new key
    // would sign a history the folder's notes are never checked against.
    const held = dir === undefined ? [] : await folderNoteSizes(dir, origin);
    if (dir !== undefined && held.length > 0) {
      const [covered] = await db
        .select({ seq: auditEvents.seq })
        .from(auditEvents)
        .where(gte(auditEvents.seq, held[0]!))
        .limit(1);
      if (covered) throw new AuditKeyMissingFromFolderError(origin, dir, held[0]!);
    }
    // The key made and an earlier log's notes moved aside under the checkpointer's lock, in one
    // transaction: another instance starting now sees the key only once the notes are aside, and
    // signs (and writes) no note of the new log before then. A move that fails stores no key.
    superseded = await db.transaction(async (tx) => {
      await tx.execute(sql.raw(`select pg_advisory_xact_lock(${CHECKPOINT_LOCK_KEY})`));
      const seed = new Uint8Array(randomBytes(32));
      const inserted = await tx
        .insert(auditKeys)
        .values({
          origin,
          verifierKey: verifierKeyString(origin, ed25519FromSeed(seed).publicKey),
          privateKeyEnc: encryptPrivateKey(signerKeyString(origin, seed), kek),
        })
        .onConflictDoNothing()
        .returning({ origin: auditKeys.origin });
      seed.fill(0);
      // A new log (this instance made its key): notes in the folder are another log's (an
      // earlier, shorter database on the same default folder, another origin), and this log's
      // sizes would collide with theirs, refused as a fork, so no checkpoint would ever be
      // signed. Moved aside and kept; the caller logs it and records it in the new log.
      if (dir === undefined || inserted.length === 0) return undefined;
      const { moved, to } = await supersedeNotes(dir, new Date());
      return moved > 0 ? { moved, to, newest: held[0] ?? null } : undefined;
    });
    row = await read();
    if (!row) throw new Error("audit key not stored");
  }
  const signer = parseSignerKey(decryptPrivateKey(row.privateKeyEnc, kek));
  // A row whose halves disagree would sign checkpoints nobody can check: refuse to start.
  if (verifierKeyString(origin, signer.privateKey) !== row.verifierKey) {
    throw new Error("stored audit key does not match its verifier key");
  }
  return superseded
    ? { signer, verifierKey: row.verifierKey, superseded }
    : { signer, verifierKey: row.verifierKey };
}

/** How often the token service makes sure next months' audit partitions exist. */
const PARTITION_CHECK_MS = 3_600_000;

export interface AuditTrailOptions {
  db: Db;
  kek: Uint8Array;
  origin: string;
  clock: Clock;
  /** Where each checkpoint is also written. */
  dir: string | undefined;
  timers?: CheckpointTimers | undefined;
  onError?: ((err: unknown) => void) | undefined;
  /** what an operator should know but is no fault (an earlier log's notes moved aside) */
  onNotice?: ((message: string) => void) | undefined;
}

/** The token service's {@link AuditTrail}: loads the key at start, then checkpoints on a timer. */
export class TokenServiceAuditTrail implements AuditTrail {
  readonly #opts: AuditTrailOptions;
  #verifierKey: string | null = null;
  #checkpointer: Checkpointer | undefined;
  #partitionTimer: NodeJS.Timeout | undefined;

  constructor(opts: AuditTrailOptions) {
    this.#opts = opts;
  }

  async start(): Promise<void> {
    if (this.#checkpointer) return;
    // Refuse to start rather than run a log nothing can sign (a note lands in the folder before
    // its row commits): a read-only image path, a volume not mounted, a folder of another user.
    if (this.#opts.dir !== undefined) await ensureCheckpointFolder(this.#opts.dir);
    const { signer, verifierKey, superseded } = await loadAuditSigner(
      this.#opts.db,
      this.#opts.kek,
      this.#opts.origin,
      this.#opts.dir,
    );
    if (superseded) {
      this.#opts.onNotice?.(
        `a new audit log: the ${superseded.moved} checkpoint note(s) of an earlier one in the folder were moved to ${superseded.to}`,
      );
      // In the new log itself: whoever reads it sees that an earlier log's notes were there.
      await appendEvents(this.#opts.db, [
        {
          type: "audit.notes_superseded",
          at: this.#opts.clock.now(),
          data: { moved: superseded.moved, folder: basename(superseded.to), newest: superseded.newest },
        },
      ]);
    }
    this.#verifierKey = verifierKey;
    this.#checkpointer = new Checkpointer({
      db: this.#opts.db,
      signer,
      clock: this.#opts.clock,
      dir: this.#opts.dir,
      timers: this.#opts.timers,
      onError: this.#opts.onError,
    });
    this.#checkpointer.start();
    // The month partitions of audit_events are kept two months ahead (a SECURITY DEFINER function,
    // so the services' INSERT/SELECT role suffices). A failure is reported, never fatal: rows of a
    // month without its partition land in the default partition and are kept.
    const ensure = () => {
      ensureAuditPartitions(this.#opts.db).catch(this.#opts.onError ?? (() => {}));
    };
    ensure();
    this.#partitionTimer = setInterval(ensure, PARTITION_CHECK_MS);
    this.#partitionTimer.unref();
  }

  /** Stops the timer after a last checkpoint of what was written. */
  async stop(): Promise<void> {
    if (this.#partitionTimer) clearInterval(this.#partitionTimer);
    const cp = this.#checkpointer;
    if (!cp) return;
    await cp.stop();
    await cp.checkpoint().catch(this.#opts.onError ?? (() => {}));
  }

  verifierKey(): string | null {
    return this.#verifierKey;
  }

  async checkpoint(): Promise<StoredCheckpoint | null> {
    if (!this.#checkpointer) return latestCheckpoint(this.#opts.db);
    return this.#checkpointer.checkpoint();
  }

  async heldCheckpoints(): Promise<{ treeSize: number; note: string }[]> {
    return this.#checkpointer ? this.#checkpointer.held() : [];
  }
}
