import { PhaselockError, randomBase64url } from "@phaselock/core";
import { type Db, executePipelined, queryRows, schema } from "@phaselock/db";
import { and, asc, desc, eq, gt, gte, lt, lte, type SQL, sql } from "drizzle-orm";
import {
  type ChainBreak,
  type ChainResult,
  canonicalPrepared,
  chainHash,
  GENESIS,
  type PreparedEvent,
  prepareEvent,
  type StoredEvent,
  verifyChain,
} from "./chain.ts";
import { exportLine, headerLine, trailerLine } from "./export-format.ts";
import { eventLeafHash } from "./leaf.ts";
import { equalHash, fromBase64, IncrementalTree, leafHashHex, toBase64 } from "./merkle.ts";
import { parseCheckpoint, parseVerifierKey, type VerifierKey, verifyCheckpoint } from "./note.ts";
import type { AuditEventInput } from "./sink.ts";

const { auditArchives, auditCheckpoints, auditEvents } = schema;

/**
 * Key of the transaction-scoped advisory lock every appender takes, so writers in different
 * processes (gateways, token service) serialise on the chain head. Arbitrary but fixed.
 */
export const AUDIT_LOCK_KEY = 7_305_512_017;

/**
 * Rows per INSERT. A chunk travels as 12 array parameters (one per column, expanded by
 * `unnest`), so the 65,535 bind-parameter limit never applies; the size only bounds a statement.
 */
export const INSERT_CHUNK_ROWS = 2_000;

/** Where the chain stands after an append. */
export interface AppendResult {
  /** Hash of the newest event (the chain head). */
  head: string;
  /** seq of the newest event (0 when nothing has ever been written). */
  headSeq: number;
  /** seq of the first event written by this call (`headSeq + 1` when `events` was empty). */
  firstSeq: number;
  /** ids given to the events, in order. */
  ids: string[];
}

/**
 * Appends events to the chain in one transaction: takes the chain lock (so writers in other
 * processes serialise), reads the head, assigns seq and ids (`evt_…`), hashes, inserts in chunks.
 * Throws `TypeError`, writing nothing, when an event cannot be stored. Works on postgres.js and
 * PGlite.
 */
export async function appendEvents(db: Db, events: readonly AuditEventInput[]): Promise<AppendResult> {
  // Prepared before the transaction: a malformed event throws here without touching the chain,
  // and the lock is held only for hashing and the inserts.
  return appendPrepared(db, events.map(prepareEvent));
}

/** The newest event of the chain as a writer last saw it: its seq (0 for none) and hash. */
export interface ChainHead {
  seq: number;
  hash: string;
}

/**
 * {@link appendEvents} for events already passed through `prepareEvent` (the batch writer's path).
 *
 * With `expected` (the head this writer's previous append left, `AppendResult.head`/`headSeq`) on
 * postgres.js, the append is one round trip: seq, ids and hashes are computed before the
 * transaction on that head, and one prepared call of `audit_append()` takes the chain lock and
 * inserts the rows only if the head under the lock is still `expected` (see
 * {@link appendOnExpectedHead}). When another writer moved the head meanwhile nothing is written;
 * the append is retried once on the head that call saw, then falls back to reading the head under
 * the lock (as it does at an isolation the function refuses). Either way the rows
 * chain onto the head as it stands under the lock: `expected` is only a guess, never trusted.
 */
export async function appendPrepared(
  db: Db,
  events: readonly PreparedEvent[],
  expected?: ChainHead,
): Promise<AppendResult> {
  if (events.length === 0) {
    const head = await readHead(db);
    const headSeq = head?.seq ?? 0;
    return { head: head?.hash ?? GENESIS, headSeq, firstSeq: headSeq + 1, ids: [] };
  }
  const raw = rawPostgres(db);
  if (raw && events.length <= INSERT_CHUNK_ROWS) {
    if (expected !== undefined) {
      const first = await appendOnExpectedHead(raw, events, expected);
      if ("ids" in first) return first;
      if ("seen" in first && wellFormedHead(first.seen)) {
        const second = await appendOnExpectedHead(raw, events, first.seen);
        if ("ids" in second) return second;
      }
    }
    return appendInFourRoundTrips(raw, events);
  }
  // READ COMMITTED: the head read after the lock must see the previous holder's commit.
  return db.transaction((tx) => appendInTransaction(tx, events), { isolationLevel: "read committed" });
}

/** postgres.js's `unsafe`: with `params`, the values bound to a statement prepared per connection. */
type Unsafe = (
  query: string,
  params?: readonly string[],
  options?: { prepare: true },
) => PromiseLike<unknown>;

/** The part of a postgres.js client the raw appends use. */
interface RawPostgres {
  begin<T>(options: string, fn: (tx: { unsafe: Unsafe }) => Promise<T>): Promise<T>;
  unsafe: Unsafe;
}

const HEX_HASH = /^[0-9a-f]{64}$/;

/** A non-negative integer seq and a lowercase hex SHA-256. */
const wellFormedHead = (h: ChainHead): boolean =>
  Number.isSafeInteger(h.seq) && h.seq >= 0 && HEX_HASH.test(h.hash);

/**
 * One round trip: a prepared call of `audit_append()`, which runs as one implicit transaction
 * (committed at its end, rolled back whole on any error): the chain lock; the head under the lock
 * (its snapshot taken after the lock is granted, so it sees the previous holder's commit); the
 * `unnest` insert of rows chained onto `expected` only if that head is still `expected` (all rows
 * or none); the head as it now stands. The function's statements keep their plans for the
 * session, and the call's own statement is parsed once per connection: sent as text with every
 * value inlined, Postgres lexed, parsed and analysed it afresh for every batch (~25 % of its CPU
 * per append). The function refuses to run at any isolation but READ COMMITTED (0014); on a
 * session whose default is higher (an operator's setting) each append, once refused, goes in four
 * round trips, which set the isolation explicitly.
 * Returns the append, or the head seen under the lock when it was not `expected` (nothing written).
 */
async function appendOnExpectedHead(
  raw: RawPostgres,
  events: readonly PreparedEvent[],
  expected: ChainHead,
): Promise<AppendResult | { seen: ChainHead } | { isolation: false }> {
  if (!wellFormedHead(expected)) {
    throw new TypeError("audit: malformed expected chain head");
  }
  const firstSeq = expected.seq + 1;
  const {
    chunks: [cols = new ColumnArrays()],
    ids,
    head: prevHash,
  } = chainRows(events, firstSeq, expected.hash);
  let headRows: unknown;
  try {
    headRows = await raw.unsafe(
      AUDIT_APPEND_CALL,
      [String(AUDIT_LOCK_KEY), String(expected.seq), expected.hash, ...cols.arrayLiterals()],
      { prepare: true },
    );
  } catch (err) {
    if ((err as { code?: unknown }).code === INVALID_TRANSACTION_STATE) return { isolation: false };
    throw err;
  }
  // The head as the function left it: this append's last row exactly when the rows went in (the
  // hash covers this call's fresh random ids); the function lets in all rows or none.
  if (!Array.isArray(headRows)) throw new Error("audit: unexpected reply appending to the chain");
  const row = headRows[0] as { head_seq: string | null; head_hash: string | null } | undefined;
  const head =
    row?.head_seq != null && row.head_hash != null
      ? { head_seq: row.head_seq, hash: row.head_hash }
      : undefined;
  const lastSeq = firstSeq + events.length - 1;
  if (head && Number(head.head_seq) === lastSeq && head.hash === prevHash) {
    return { head: prevHash, headSeq: lastSeq, firstSeq, ids };
  }
  return { seen: head ? { seq: Number(head.head_seq), hash: head.hash } : { seq: 0, hash: GENESIS } };
}

/** SQLSTATE `audit_append()` raises when called at an isolation other than READ COMMITTED. */
const INVALID_TRANSACTION_STATE = "25000";

/** The postgres.js client under a drizzle `Db`, when it is one (an embedded PGlite is not). */
function rawPostgres(db: Db): RawPostgres | undefined {
  const client = (db as { $client?: { begin?: unknown; reserve?: unknown } }).$client;
  return client && typeof client.begin === "function" && typeof client.reserve === "function"
    ? (client as unknown as RawPostgres)
    : undefined;
}

/**
 * {@link appendPrepared} on postgres.js in four round trips instead of six (drizzle's begin,
 * isolation, lock, head, insert, commit, each awaited): `begin isolation level read committed`; one
 * simple-protocol query `lock; head`, whose statements the server runs strictly in order, so the
 * head is read after the lock (its statement's snapshot is taken then); the prepared insert, each
 * column one bound array; `commit`. postgres.js rolls back on any failure.
 */
async function appendInFourRoundTrips(
  raw: RawPostgres,
  events: readonly PreparedEvent[],
): Promise<AppendResult> {
  return raw.begin("isolation level read committed", async (tx) => {
    const results = (await tx.unsafe(
      `select pg_advisory_xact_lock(${AUDIT_LOCK_KEY}); ` +
        // `head_seq`, not `seq`: ORDER BY would take an output alias of that name (text order).
        "select seq::text as head_seq, hash from audit_events order by seq desc limit 1",
    )) as unknown[];
    const headRows = results[1];
    if (!Array.isArray(headRows)) throw new Error("audit: unexpected reply reading the chain head");
    const head = headRows[0] as { head_seq: string; hash: string } | undefined;
    const firstSeq = (head ? Number(head.head_seq) : 0) + 1;
    const {
      chunks: [cols = new ColumnArrays()],
      ids,
      head: prevHash,
    } = chainRows(events, firstSeq, head?.hash ?? GENESIS);
    await tx.unsafe(INSERT_CALL, cols.arrayLiterals(), { prepare: true });
    return { head: prevHash, headSeq: firstSeq + events.length - 1, firstSeq, ids };
  });
}

/**
 * Appends events inside the caller's transaction (READ COMMITTED), so they commit or roll back
 * with the change they record. Takes the chain lock until that transaction ends: call it as the
 * transaction's last statement, so the lock is held only for the inserts and the commit. Throws,
 * writing nothing, at any other isolation (an operator's `default_transaction_isolation`): the
 * head would be read from a snapshot taken before the lock, and a writer committing between
 * them would go unseen (a duplicate seq, or a fork across a month's partitions).
 */
export async function appendInTransaction(
  tx: Db,
  events: readonly (PreparedEvent | AuditEventInput)[],
): Promise<AppendResult> {
  // The isolation read in the lock's own statement: no round trip more.
  const [locked] = await queryRows<{ isolation: string }>(
    tx,
    sql.raw(
      `select pg_advisory_xact_lock(${AUDIT_LOCK_KEY}), current_setting('transaction_isolation') as isolation`,
    ),
  );
  if (locked?.isolation !== "read committed") {
    throw new Error(
      `the audit append needs READ COMMITTED, not ${locked?.isolation ?? "an unknown isolation"}`,
    );
  }
  const head = await readHead(tx);
  const firstSeq = (head?.seq ?? 0) + 1;
  const ids = eventIds(events.length);
  let prevHash = head?.hash ?? GENESIS;
  // Each chunk is prepared, hashed and encoded while Postgres inserts the one before it: for a
  // 10,000-link batch that JS work (~80 ms) otherwise waits for the server and the server for it.
  function* chunks(): Generator<SQL> {
    for (let start = 0; start < events.length; start += INSERT_CHUNK_ROWS) {
      const slice = events.slice(start, start + INSERT_CHUNK_ROWS);
      const prepared = slice.map((e) => ("canonicalParts" in e ? e : prepareEvent(e)));
      const chunk = chainChunk(prepared, firstSeq + start, prevHash, ids.slice(start));
      prevHash = chunk.head;
      yield chunk.cols.insert();
    }
  }
  await executePipelined(tx, chunks());
  return { head: prevHash, headSeq: firstSeq + events.length - 1, firstSeq, ids };
}

/** Fresh event ids for `n` events appended together (one clock reading: ids sort by time). */
function eventIds(n: number): string[] {
  const now = Date.now();
  return Array.from({ length: n }, () => eventId(now));
}

/**
 * Chains `events` after the row (`firstSeq - 1`, `prevHash`): a fresh id each, the chain hash and
 * the leaf hash, as column arrays of at most `chunkRows` rows.
 */
function chainRows(
  events: readonly PreparedEvent[],
  firstSeq: number,
  prevHash: string,
  chunkRows = Number.POSITIVE_INFINITY,
): { chunks: ColumnArrays[]; ids: string[]; head: string } {
  const ids = eventIds(events.length);
  const chunks: ColumnArrays[] = [];
  let head = prevHash;
  for (let start = 0; start < events.length; start += chunkRows) {
    const chunk = chainChunk(
      events.slice(start, start + chunkRows),
      firstSeq + start,
      head,
      ids.slice(start),
    );
    chunks.push(chunk.cols);
    head = chunk.head;
  }
  return { chunks, ids, head };
}

/**
 * Chains `events` (seqs from `firstSeq`, ids from `ids`) after the row whose hash is `prevHash`:
 * the one place rows get their chain and leaf hashes.
 */
function chainChunk(
  events: readonly PreparedEvent[],
  firstSeq: number,
  prevHash: string,
  ids: readonly string[],
): { cols: ColumnArrays; head: string } {
  const cols = new ColumnArrays();
  let head = prevHash;
  for (let i = 0; i < events.length; i++) {
    const seq = firstSeq + i;
    const canonical = canonicalPrepared(events[i]!, seq, ids[i]!);
    const hash = chainHash(head, canonical);
    cols.push(events[i]!, seq, ids[i]!, head, hash, leafHashHex(canonical));
    head = hash;
  }
  return { cols, head };
}

/**
 * Postgres array literal of text elements: every element quoted, so only `"` and `\\` need
 * escaping (an element with neither, as hashes, ids and times are, is copied as it is).
 */
const ARRAY_ESCAPE = /["\\]/g;
function arrayLiteral(values: readonly (string | null)[]): string {
  let out = "{";
  for (let i = 0; i < values.length; i++) {
    const v = values[i]!;
    if (i > 0) out += ",";
    if (v === null) out += "NULL";
    else if (v.search(ARRAY_ESCAPE) === -1) out += `"${v}"`;
    else out += `"${v.replace(ARRAY_ESCAPE, "\\$&")}"`;
  }
  return `${out}}`;
}

/** The columns an append writes with their types, in {@link ColumnArrays}' order. */
const COLUMNS = [
  ["seq", "bigint"],
  ["id", "text"],
  ["at", "timestamptz"],
  ["type", "text"],
  ["actor", "text"],
  ["campaign_id", "text"],
  ["link_id", "text"],
  ["decision", "text"],
  ["reason", "text"],
  ["data", "jsonb"],
  ["prev_hash", "text"],
  ["hash", "text"],
  ["leaf_hash", "text"],
] as const;
const INSERT_COLUMNS = COLUMNS.map(([name]) => name).join(", ");

/** The column arrays as bound parameters `$first::type[], …`. */
const arrayParams = (first: number): string =>
  COLUMNS.map(([, type], i) => `$${first + i}::${type}[]`).join(", ");

/** The insert of one chunk, each column a bound array ({@link ColumnArrays.arrayLiterals}). */
const INSERT_CALL = `insert into audit_events (${INSERT_COLUMNS}) select * from unnest(${arrayParams(1)})`;

/**
 * `audit_append()` (migrations 0013, 0014), every value a bound parameter. Every argument is cast:
 * the casts pick our function's signature, not an overload a role with CREATE on public could add.
 */
const AUDIT_APPEND_CALL = `select head_seq, head_hash from public.audit_append($1::bigint, $2::bigint, $3::text, ${arrayParams(4)})`;

/** One INSERT's rows, column by column, for `insert … select * from unnest(…)`. */
class ColumnArrays {
  readonly #seq: string[] = [];
  readonly #id: string[] = [];
  readonly #at: string[] = [];
  readonly #type: string[] = [];
  readonly #actor: (string | null)[] = [];
  readonly #campaignId: (string | null)[] = [];
  readonly #linkId: (string | null)[] = [];
  readonly #decision: (string | null)[] = [];
  readonly #reason: (string | null)[] = [];
  readonly #data: string[] = [];
  readonly #prevHash: string[] = [];
  readonly #hash: string[] = [];
  readonly #leafHash: string[] = [];

  push(e: PreparedEvent, seq: number, id: string, prevHash: string, hash: string, leaf: string): void {
    this.#seq.push(String(seq));
    this.#id.push(id);
    this.#at.push(e.atIso);
    this.#type.push(e.type);
    this.#actor.push(e.actor);
    this.#campaignId.push(e.campaignId);
    this.#linkId.push(e.linkId);
    this.#decision.push(e.decision);
    this.#reason.push(e.reason);
    this.#data.push(e.dataJson);
    this.#prevHash.push(prevHash);
    this.#hash.push(hash);
    this.#leafHash.push(leaf);
  }

  /** The thirteen column arrays, in {@link COLUMNS}' order. */
  #columns(): (readonly (string | null)[])[] {
    return [
      this.#seq,
      this.#id,
      this.#at,
      this.#type,
      this.#actor,
      this.#campaignId,
      this.#linkId,
      this.#decision,
      this.#reason,
      this.#data,
      this.#prevHash,
      this.#hash,
      this.#leafHash,
    ];
  }

  /** The thirteen column arrays as array literals, the parameters of {@link INSERT_CALL}. */
  arrayLiterals(): string[] {
    return this.#columns().map(arrayLiteral);
  }

  /** The same INSERT for drizzle, each array a bound parameter. */
  insert(): SQL {
    const arrays = this.arrayLiterals().map((literal, i) => sql`${literal}::${sql.raw(COLUMNS[i]![1])}[]`);
    return sql`insert into audit_events (${sql.raw(INSERT_COLUMNS)}) select * from unnest(${sql.join(arrays, sql`, `)})`;
  }
}

const storedColumns = {
  seq: auditEvents.seq,
  id: auditEvents.id,
  at: auditEvents.at,
  type: auditEvents.type,
  actor: auditEvents.actor,
  campaignId: auditEvents.campaignId,
  linkId: auditEvents.linkId,
  decision: auditEvents.decision,
  reason: auditEvents.reason,
  data: auditEvents.data,
  prevHash: auditEvents.prevHash,
  hash: auditEvents.hash,
};

export interface ListEventsQuery {
  campaignId?: string | undefined;
  linkId?: string | undefined;
  decision?: "allow" | "deny" | undefined;
  /** Only events whose `at` is at or after this time. */
  since?: Date | undefined;
  /** Default 50, clamped to 1..500. */
  limit?: number | undefined;
  /** `nextCursor` of the previous page. */
  cursor?: string | undefined;
}

export interface EventPage {
  items: StoredEvent[];
  nextCursor: string | null;
}

export const DEFAULT_LIST_LIMIT = 50;
export const MAX_LIST_LIMIT = 500;

/**
 * Events newest first (by seq), filtered, paged with an opaque cursor. A malformed cursor throws
 * `PhaselockError("validation")`.
 */
export async function listEvents(db: Db, q: ListEventsQuery = {}): Promise<EventPage> {
  const requested =
    q.limit !== undefined && Number.isFinite(q.limit) ? Math.trunc(q.limit) : DEFAULT_LIST_LIMIT;
  const limit = Math.min(MAX_LIST_LIMIT, Math.max(1, requested));
  const where: SQL[] = [];
  if (q.cursor !== undefined) where.push(lt(auditEvents.seq, decodeCursor(q.cursor)));
  if (q.campaignId !== undefined) where.push(eq(auditEvents.campaignId, q.campaignId));
  if (q.linkId !== undefined) where.push(eq(auditEvents.linkId, q.linkId));
  if (q.decision !== undefined) where.push(eq(auditEvents.decision, q.decision));
  if (q.since !== undefined) where.push(gte(auditEvents.at, q.since));
  const rows = await db
    .select(storedColumns)
    .from(auditEvents)
    .where(and(...where))
    .orderBy(desc(auditEvents.seq))
    .limit(limit + 1);
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, nextCursor: rows.length > limit && last ? encodeCursor(last.seq) : null };
}

const CURSOR_PREFIX = "audit:";

const encodeCursor = (seq: number): string => Buffer.from(`${CURSOR_PREFIX}${seq}`).toString("base64url");

function decodeCursor(cursor: string): number {
  const text = Buffer.from(cursor, "base64url").toString("utf8");
  const seq = text.startsWith(CURSOR_PREFIX) ? Number(text.slice(CURSOR_PREFIX.length)) : Number.NaN;
  if (!Number.isSafeInteger(seq) || seq < 1 || encodeCursor(seq) !== cursor) {
    throw new PhaselockError("validation", "invalid cursor");
  }
  return seq;
}

/**
 * Stored events in seq order (from `fromSeq` on, else from the lowest seq present, even a forged
 * one below 1; up to `toSeq` when given), read in keyset pages of `batchSize` so a large table is
 * never loaded at once.
 */
export function streamEvents(
  db: Db,
  opts: { fromSeq?: number | undefined; toSeq?: number | undefined; batchSize?: number | undefined } = {},
): AsyncGenerator<StoredEvent> {
  return pageEvents(db, storedColumns, opts);
}

/** {@link streamEvents} with each row's stored `leafHash` (what proofs are served from). */
const streamEventsWithLeaf = (db: Db, opts: { fromSeq?: number; toSeq?: number; batchSize: number }) =>
  pageEvents(db, { ...storedColumns, leafHash: auditEvents.leafHash }, opts);

async function* pageEvents<C extends typeof storedColumns>(
  db: Db,
  columns: C,
  opts: { fromSeq?: number | undefined; toSeq?: number | undefined; batchSize?: number | undefined },
): AsyncGenerator<StoredEvent & { [K in Exclude<keyof C, keyof StoredEvent>]: string }> {
  const batchSize = Math.max(1, Math.trunc(opts.batchSize ?? 1_000));
  const upper = opts.toSeq === undefined ? undefined : lte(auditEvents.seq, opts.toSeq);
  let lower: SQL | undefined = opts.fromSeq === undefined ? undefined : gte(auditEvents.seq, opts.fromSeq);
  for (;;) {
    const page = (await db
      .select(columns as typeof storedColumns)
      .from(auditEvents)
      .where(and(lower, upper))
      .orderBy(asc(auditEvents.seq))
      .limit(batchSize)) as unknown as (StoredEvent & {
      [K in Exclude<keyof C, keyof StoredEvent>]: string;
    })[];
    yield* page;
    const last = page.at(-1);
    if (!last || page.length < batchSize) return;
    lower = gt(auditEvents.seq, last.seq);
  }
}

/**
 * Verifies the whole stored chain: it must start at seq 1 on GENESIS (or right after the newest
 * archived stretch, on its head), every event must link to the one before, and it must reach the
 * size of the newest stored checkpoint (else `seq_gap` at the first missing seq, with id `""`).
 * With the log's key, the tree of the events must also give the root of every stored checkpoint
 * that key signed (else `checkpoint_mismatch`; not checked once months are archived). Streams the
 * table in keyset pages (default 1,000 rows).
 */
export async function verifyStored(
  db: Db,
  opts: {
    batchSize?: number;
    /** The log's verifier key: the chain must also reach the newest checkpoint it signed. */
    verifierKey?: string | VerifierKey | null | undefined;
    /**
     * Checkpoints known from outside the database (the checkpointer's folder), checked like the
     * stored ones: deleting the checkpoint rows does not hide them. Notes the key did not sign
     * for their size are ignored.
     */
    held?: readonly { treeSize: number; note: string }[] | undefined;
  } = {},
): Promise<ChainResult> {
  const key = typeof opts.verifierKey === "string" ? parseVerifierKey(opts.verifierKey) : opts.verifierKey;
  const batchSize = opts.batchSize ?? 1_000;
  // After `pnpm audit:archive` the live log starts after the newest archived stretch, at its head.
  const [archived] = await db
    .select({ toSeq: auditArchives.toSeq, head: auditArchives.head, frontier: auditArchives.frontier })
    .from(auditArchives)
    .orderBy(desc(auditArchives.toSeq))
    .limit(1);
  // Read before the events: whatever a stored checkpoint covers was committed, so the stream sees it.
  const held = key ? (opts.held ?? []).filter((cp) => signedFor(cp, key)) : [];
  const newestStored = key ? await newestSignedSize(db, key) : undefined;
  const sizes = [newestStored, ...held.map((cp) => cp.treeSize)].filter((n) => n !== undefined);
  const signed = sizes.length > 0 ? Math.max(...sizes) : undefined;
  const first = (archived?.toSeq ?? 0) + 1;
  // An owner can rewrite events and recompute every chain and leaf hash, which the chain alone
  // cannot see; the checkpoints the log's key signed can. From seq 1 the tree is built from the
  // events; after an archive it resumes from the archived stretch's frontier, as its row states
  // it. That row is not trusted (an owner may forge one, dropping the events before it): the live
  // leaves folded onto a forged frontier give no signed root. A row with no usable frontier, while
  // a signed checkpoint covers live events, vouches for nothing: reported at the first live event.
  let tree = new IncrementalTree();
  let unresumable = false;
  if (key && archived) {
    const resumed = archivedTree(archived);
    if (resumed) tree = resumed;
    else unresumable = signed !== undefined && signed >= first;
  }
  const resumedAt = tree.size;
  const checkpoints = key && !unresumable ? streamCheckpointRoots(db, batchSize, held) : undefined;
  let nextCheckpoint = await checkpoints?.next();
  // The first event no checkpoint has vouched for yet: where a mismatch is reported.
  let unvouched: { seq: number; id: string } | undefined;
  // A row's leaf hash (what checkpoints sign and proofs are served from) must be its event's, or
  // the tree would commit to something the chain does not: reported as that event's hash_mismatch.
  let leafBreak: ChainBreak | undefined;
  let treeBreak: ChainBreak | undefined;
  async function* leavesChecked() {
    for await (const e of streamEventsWithLeaf(db, { batchSize })) {
      yield e;
      // Once verifyChain has checked e's link (a broken link is reported first, as before).
      const leaf = eventLeafHash(e);
      if (Buffer.from(leaf).toString("hex") !== e.leafHash) {
        leafBreak = { seq: e.seq, id: e.id, reason: "hash_mismatch" };
        return;
      }
      if (unresumable) {
        treeBreak = { seq: e.seq, id: e.id, reason: "checkpoint_mismatch" };
        return;
      }
      // Leaves up to a resumed checkpoint are in its frontier already.
      if (!checkpoints || !key || e.seq <= resumedAt) continue;
      unvouched ??= { seq: e.seq, id: e.id };
      const from = unvouched;
      tree.appendLeafHash(leaf);
      while (nextCheckpoint && !nextCheckpoint.done && nextCheckpoint.value.treeSize <= tree.size) {
        const cp = nextCheckpoint.value;
        if (cp.treeSize === tree.size) {
          // The root in the note, never the row's root_hash column (an owner could rewrite it).
          // Only a mismatch needs the signature: rows the key did not sign (the services' role
          // may insert them) are passed over.
          const noted = notedRoot(cp.note);
          if (noted && equalHash(tree.root(), noted)) {
            unvouched = undefined;
          } else if (signedFor(cp, key)) {
            treeBreak = { ...from, reason: "checkpoint_mismatch" };
            return;
          }
        }
        nextCheckpoint = await checkpoints.next();
      }
    }
  }
  const result = await verifyChain(leavesChecked(), { prevHash: archived?.head ?? GENESIS, seq: first });
  if (result.ok && leafBreak) return { ok: false, events: result.events - 1, brokenAt: leafBreak };
  if (result.ok && treeBreak) return { ok: false, events: treeBreak.seq - first, brokenAt: treeBreak };
  // The chain that is left may link up after its newest events were removed (rows deleted, a
  // partition detached): a checkpoint of a longer log says they existed. The first missing seq
  // is where it breaks; no event carries it, so no id.
  const headSeq = first + result.events - 1;
  if (result.ok && signed !== undefined && headSeq < signed) {
    return { ok: false, events: result.events, brokenAt: { seq: headSeq + 1, id: "", reason: "seq_gap" } };
  }
  return result;
}

/** The tree of an archived stretch (`toSeq` leaves) from its row's frontier, or undefined. */
function archivedTree(row: { toSeq: number; frontier: unknown }): IncrementalTree | undefined {
  if (!Array.isArray(row.frontier) || !row.frontier.every((h) => typeof h === "string")) return undefined;
  try {
    return IncrementalTree.fromFrontier(row.toSeq, row.frontier.map(fromBase64));
  } catch {
    // A frontier of the wrong shape: no tree of that size.
    return undefined;
  }
}

/** Stored checkpoints (size, note) by ascending size, in keyset pages, `extra` merged in. */
async function* streamCheckpointRoots(
  db: Db,
  batchSize: number,
  extra: readonly { treeSize: number; note: string }[],
): AsyncGenerator<{ treeSize: number; note: string }> {
  const pending = [...extra].sort((a, b) => a.treeSize - b.treeSize);
  for await (const cp of storedCheckpointRoots(db, batchSize)) {
    while (pending[0] && pending[0].treeSize <= cp.treeSize) yield pending.shift()!;
    yield cp;
  }
  yield* pending;
}

async function* storedCheckpointRoots(
  db: Db,
  batchSize: number,
): AsyncGenerator<{ treeSize: number; note: string }> {
  let above = 0;
  for (;;) {
    const page = await db
      .select({ treeSize: auditCheckpoints.treeSize, note: auditCheckpoints.note })
      .from(auditCheckpoints)
      .where(gt(auditCheckpoints.treeSize, above))
      .orderBy(asc(auditCheckpoints.treeSize))
      .limit(batchSize);
    yield* page;
    const last = page.at(-1);
    if (!last || page.length < batchSize) return;
    above = last.treeSize;
  }
}

/** The root a note's checkpoint body states, signature unchecked; undefined when malformed. */
function notedRoot(note: string): Uint8Array | undefined {
  const end = note.indexOf("\n\n");
  try {
    return end < 0 ? undefined : parseCheckpoint(note.slice(0, end + 1)).rootHash;
  } catch {
    return undefined;
  }
}

/** Whether `key` signed this row's note as a checkpoint of this row's size. */
function signedFor(cp: { treeSize: number; note: string }, key: VerifierKey): boolean {
  const opened = verifyCheckpoint(cp.note, key, key.name);
  return opened.ok && opened.checkpoint.size === cp.treeSize;
}

/**
 * Tree size of the newest stored checkpoint `key` signed (rows it did not sign, which the
 * services' role could insert, are skipped; at most 1,000 rows looked at), or undefined.
 */
async function newestSignedSize(db: Db, key: VerifierKey): Promise<number | undefined> {
  let below = Number.MAX_SAFE_INTEGER;
  for (let page = 0; page < 10; page++) {
    const rows = await db
      .select({ treeSize: auditCheckpoints.treeSize, note: auditCheckpoints.note })
      .from(auditCheckpoints)
      .where(lt(auditCheckpoints.treeSize, below))
      .orderBy(desc(auditCheckpoints.treeSize))
      .limit(100);
    for (const row of rows) {
      const opened = verifyCheckpoint(row.note, key, key.name);
      if (opened.ok && opened.checkpoint.size === row.treeSize) return row.treeSize;
    }
    if (rows.length < 100) return undefined;
    below = rows.at(-1)!.treeSize;
  }
  return undefined;
}

export interface ExportOptions {
  /** Start at the first event whose `at` is at or after this time; everything after it follows. */
  since?: Date | undefined;
  /** Receives each line without its newline. May return a promise (backpressure). */
  write: (line: string) => void | Promise<void>;
  batchSize?: number | undefined;
  /** Called after each page with the number of events written so far. */
  onProgress?: ((events: number) => void) | undefined;
  /**
   * The log's verifier key: a `--since` export's frontier is then resumed from a checkpoint it
   * signed. Without it, from every stored leaf (slower on a long log; never from an unsigned row).
   */
  verifierKey?: string | VerifierKey | null | undefined;
}

/**
 * Writes an NDJSON export in seq order: a header line (`from_seq`, `prev_hash`), one line per
 * event with every column, a trailer line (`events`, `head`).
 * With `since`, the export starts at the first event at or after it and runs contiguously to the
 * head (later events with an earlier `at` included), so it stays one verifiable stretch of chain.
 */
export async function exportEvents(db: Db, opts: ExportOptions): Promise<{ events: number; head: string }> {
  // The end is fixed first: events appended while the export runs belong to the next one.
  const toSeq = (await readHead(db))?.seq ?? 0;
  const fromSeq = await exportStart(db, opts.since, toSeq);
  const key = typeof opts.verifierKey === "string" ? parseVerifierKey(opts.verifierKey) : opts.verifierKey;
  const frontier = fromSeq.seq > 1 ? await frontierBefore(db, fromSeq.seq - 1, key ?? undefined) : undefined;
  await opts.write(headerLine(fromSeq.seq, fromSeq.prevHash, frontier));
  let count = 0;
  let head = fromSeq.prevHash;
  const batchSize = opts.batchSize ?? 1_000;
  for await (const e of streamEvents(db, { fromSeq: fromSeq.seq, toSeq, batchSize })) {
    await opts.write(exportLine(e));
    head = e.hash;
    count++;
    if (count % batchSize === 0) opts.onProgress?.(count);
  }
  opts.onProgress?.(count);
  await opts.write(trailerLine(count, head));
  return { events: count, head };
}

/**
 * The tree of the first `size` events, as an export's header names it (its frontier, base64): a
 * stored checkpoint at or below `size` that the log's key signed, whose frontier gives its signed
 * root, resumed, then the stored leaves after it; without the key (or such a row), every stored
 * leaf from the first. A wrong frontier cannot make an auditor's check pass (it cannot reach a
 * signed root), but rows the key did not sign (the services' role may insert them) are passed
 * over, so that one cannot make every later `--since` export fail either. Undefined when it
 * cannot be worked out (those events archived or missing): the export is then checked as a chain
 * only.
 */
async function frontierBefore(
  db: Db,
  size: number,
  key: VerifierKey | undefined,
): Promise<string[] | undefined> {
  let tree = new IncrementalTree();
  if (key) {
    const rows = await db
      .select({
        treeSize: auditCheckpoints.treeSize,
        note: auditCheckpoints.note,
        frontier: auditCheckpoints.frontier,
      })
      .from(auditCheckpoints)
      .where(lte(auditCheckpoints.treeSize, size))
      .orderBy(desc(auditCheckpoints.treeSize))
      .limit(100);
    for (const row of rows) {
      const resumed = resumeSignedCheckpoint(row, key);
      if (resumed.ok) {
        tree = resumed.tree;
        break;
      }
    }
  }
  for (let start = tree.size; start < size; start += FRONTIER_PAGE) {
    const end = Math.min(size, start + FRONTIER_PAGE);
    const leaves = await readLeafHashes(db, start, end);
    if (leaves.length !== end - start) return undefined;
    for (const leaf of leaves) tree.appendLeafHash(leaf);
  }
  return tree.frontier().map(toBase64);
}

/**
 * The tree of a stored checkpoint, resumed from its `frontier`, when `key` signed its note for its
 * size and the frontier gives the signed root; else which of the two failed. Nothing in the row is
 * trusted but its signed note (the services' role may insert rows; an owner may rewrite them).
 */
export function resumeSignedCheckpoint(
  row: { treeSize: number; note: string; frontier: string[] },
  key: VerifierKey,
): { ok: true; tree: IncrementalTree } | { ok: false; reason: "unsigned" | "frontier" } {
  const opened = verifyCheckpoint(row.note, key, key.name);
  if (!opened.ok || opened.checkpoint.size !== row.treeSize) return { ok: false, reason: "unsigned" };
  try {
    const tree = IncrementalTree.fromFrontier(row.treeSize, row.frontier.map(fromBase64));
    if (equalHash(tree.root(), opened.checkpoint.rootHash)) return { ok: true, tree };
  } catch {
    // A frontier of the wrong shape: no tree of that size.
  }
  return { ok: false, reason: "frontier" };
}

/** Leaves read at a time while working out an export's frontier. */
const FRONTIER_PAGE = 10_000;

async function exportStart(
  db: Db,
  since: Date | undefined,
  toSeq: number,
): Promise<{ seq: number; prevHash: string }> {
  const [first] = await db
    .select({ seq: auditEvents.seq, prevHash: auditEvents.prevHash })
    .from(auditEvents)
    .where(and(lte(auditEvents.seq, toSeq), since === undefined ? undefined : gte(auditEvents.at, since)))
    .orderBy(asc(auditEvents.seq))
    .limit(1);
  if (first) return first;
  // Nothing that recent: an empty stretch that starts after the head.
  const head = await readHead(db, toSeq);
  return head ? { seq: head.seq + 1, prevHash: head.hash } : { seq: 1, prevHash: GENESIS };
}

/** The newest event (at or below `atOrBelow`), or undefined on an empty table. */
async function readHead(db: Db, atOrBelow?: number): Promise<{ seq: number; hash: string } | undefined> {
  const [head] = await db
    .select({ seq: auditEvents.seq, hash: auditEvents.hash })
    .from(auditEvents)
    .where(atOrBelow === undefined ? undefined : lte(auditEvents.seq, atOrBelow))
    .orderBy(desc(auditEvents.seq))
    .limit(1);
  return head;
}

/** Number of events stored: the size of the audit tree (seqs are contiguous from 1). */
export async function treeSize(db: Db): Promise<number> {
  return (await readHead(db))?.seq ?? 0;
}

const leafMatches = (e: StoredEvent & { leafHash: string }): boolean =>
  Buffer.from(eventLeafHash(e)).toString("hex") === e.leafHash;

/**
 * The database no longer agrees with what this log signed (events it covers removed or rewritten,
 * a fork, a frontier or note that is not the log's): nothing is signed until an operator looks.
 * Expected when someone tampered with the database, so the token service answers `503
 * unavailable` for it rather than an internal error.
 */
export class CheckpointRefusedError extends Error {
  override readonly name = "CheckpointRefusedError";
  readonly code = "checkpoint_refused";
}

/**
 * Leaf hashes of leaves `[start, end)` computed from the stored events, each checked against its
 * row's stored `leaf_hash` (what proofs are served from): what a checkpoint may sign. Throws at a
 * row whose leaf hash is not its event's; fewer come back when rows are missing.
 */
export async function readCheckedLeafHashes(db: Db, start: number, end: number): Promise<Uint8Array[]> {
  if (end <= start) return [];
  const out: Uint8Array[] = [];
  for await (const e of streamEventsWithLeaf(db, {
    fromSeq: start + 1,
    toSeq: end,
    batchSize: end - start,
  })) {
    if (!leafMatches(e)) {
      throw new CheckpointRefusedError(
        `the stored leaf hash of seq ${e.seq} is not its event's; not signing`,
      );
    }
    out.push(eventLeafHash(e));
  }
  return out;
}

/** Stored leaf hashes of leaves `[start, end)` (leaf i is seq i + 1), for proofs. */
export async function readLeafHashes(db: Db, start: number, end: number): Promise<Uint8Array[]> {
  if (end <= start) return [];
  const rows = await db
    .select({ leafHash: auditEvents.leafHash })
    .from(auditEvents)
    .where(and(gt(auditEvents.seq, start), lte(auditEvents.seq, end)))
    .orderBy(asc(auditEvents.seq));
  return rows.map((r) => new Uint8Array(Buffer.from(r.leafHash, "hex")));
}

/**
 * An event id: `evt_`, the time in ms as 9 base-36 digits (so ids sort by time), and 96 random
 * bits. The unique index on `id` then takes new ids at its right edge, as the seq index does,
 * instead of at random leaf pages: with random ids an append into a partition of 10M events ran at
 * 71 % of the rate into an empty one, with these at 100 % (docs/benchmarks.md). Only an index hint:
 * order is seq's, and the id is hashed into the leaf like any other field.
 */
export function eventId(nowMs: number): string {
  return `evt_${nowMs.toString(36).padStart(9, "0")}${randomBase64url(12)}`;
}
