import {
  type ChainBreakReason,
  canonicalJson,
  checkLink,
  eventFields,
  GENESIS,
  type StoredEvent,
} from "./chain.ts";

// The NDJSON export format, shared by the exporter (which needs a database) and the offline
// verifier (which must not).

export const EXPORT_HEADER_TYPE = "phaselock.audit.export";
export const EXPORT_TRAILER_TYPE = "phaselock.audit.export.end";
export const EXPORT_VERSION = 1;

/** First line of an export: where in the chain it starts, so a mid-chain export still verifies. */
export interface ExportHeader {
  type: typeof EXPORT_HEADER_TYPE;
  version: typeof EXPORT_VERSION;
  /** seq of the first exported event (the next seq to be written when the export is empty). */
  from_seq: number;
  /** `prevHash` of the first exported event: the hash it chains onto (GENESIS from seq 1). */
  prev_hash: string;
  /**
   * From seq 2 on: the Merkle tree of the `from_seq - 1` events before the export, as the roots
   * of its perfect subtrees, largest first (base64; one per set bit of `from_seq - 1`). With it a
   * `--since` export resumes the tree where it starts and is checked against any checkpoint at
   * least that large: a frontier that is not the signed tree's cannot reach the signed root.
   * Absent from exports that cannot name it (made before it existed, or with no tree to read).
   */
  frontier?: string[];
}

/** Last line of an export, so an offline check can tell a complete file from a cut one. */
export interface ExportTrailer {
  type: typeof EXPORT_TRAILER_TYPE;
  events: number;
  head: string;
}

export const headerLine = (fromSeq: number, prevHash: string, frontier?: readonly string[]): string =>
  JSON.stringify({
    type: EXPORT_HEADER_TYPE,
    version: EXPORT_VERSION,
    from_seq: fromSeq,
    prev_hash: prevHash,
    ...(frontier !== undefined && fromSeq > 1 ? { frontier: [...frontier] } : {}),
  } satisfies ExportHeader);

/** How many hashes the frontier of `size` leaves has: one per set bit. */
const frontierLength = (size: number): number => {
  let n = 0;
  for (let s = size; s > 0; s = Math.floor(s / 2)) n += s % 2;
  return n;
};
const BASE64_HASH = /^[A-Za-z0-9+/]{43}=$/;

export const trailerLine = (events: number, head: string): string =>
  JSON.stringify({ type: EXPORT_TRAILER_TYPE, events, head } satisfies ExportTrailer);

/**
 * One stored event as an export line: canonical JSON (sorted keys) of every column. The verifier
 * re-encodes each parsed line and requires the same bytes, so no byte of a line can change
 * unnoticed, not even one that JSON would read as the same value.
 */
export const exportLine = (e: StoredEvent): string =>
  canonicalJson({ ...eventFields(e), prevHash: e.prevHash, hash: e.hash });

export type ExportProblem = ChainBreakReason | "bad_header" | "malformed" | "truncated" | "trailer_mismatch";

/**
 * `ok` with the count, the first seq and the head; or where it breaks: `line` is 1-based, `seq`
 * the event's own seq when the line names one (else the seq expected there; null for the header).
 */
export type ExportVerifyResult =
  | { ok: true; events: number; fromSeq: number; prevHash: string; head: string; frontier?: string[] }
  | {
      ok: false;
      events: number;
      line: number;
      brokenAt: { seq: number | null; id: string | null; reason: ExportProblem };
    };

const HASH_RE = /^[0-9a-f]{64}$/;
const EVENT_KEYS = [
  "actor",
  "at",
  "campaignId",
  "data",
  "decision",
  "hash",
  "id",
  "linkId",
  "prevHash",
  "reason",
  "seq",
  "type",
].join(",");

/**
 * Checks an NDJSON export offline: the header, that every line is exactly what the exporter
 * writes, the hash chain from the header's `prev_hash`/`from_seq`, and the trailer. `onEvent`
 * sees each event once its line and link have checked out, in order (the tree is built from it).
 */
export async function verifyExport(
  lines: AsyncIterable<string> | Iterable<string>,
  opts: { onHeader?: (h: ExportHeader) => void; onEvent?: (e: StoredEvent) => void } = {},
): Promise<ExportVerifyResult> {
  let lineNo = 0;
  let header: ExportHeader | null = null;
  let prev = GENESIS;
  let expectedSeq = 1;
  let count = 0;
  let ended = false;
  let blankAt = 0;
  const fail = (seq: number | null, id: string | null, reason: ExportProblem, line = lineNo) =>
    ({ ok: false, events: count, line, brokenAt: { seq, id, reason } }) as const;

  for await (const raw of lines) {
    lineNo++;
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    if (line === "") {
      blankAt ||= lineNo;
      continue;
    }
    // Only trailing blank lines are tolerated.
    if (blankAt) return fail(header ? expectedSeq : null, null, "malformed", blankAt);
    if (header === null) {
      header = parseHeader(line);
      if (!header) return fail(null, null, "bad_header");
      prev = header.prev_hash;
      expectedSeq = header.from_seq;
      opts.onHeader?.(header);
      continue;
    }
    if (ended) return fail(expectedSeq, null, "malformed");
    const value = parseJson(line);
    if (!isRecord(value)) return fail(expectedSeq, null, "malformed");
    if (!("seq" in value) && value.type === EXPORT_TRAILER_TYPE) {
      if (line !== trailerLine(value.events as number, value.head as string)) {
        return fail(expectedSeq, null, "malformed");
      }
      if (value.events !== count || value.head !== prev) return fail(expectedSeq, null, "trailer_mismatch");
      ended = true;
      continue;
    }
    const event = toStoredEvent(value);
    if (!event || exportLine(event) !== line) {
      const seq = Number.isSafeInteger(value.seq) ? (value.seq as number) : expectedSeq;
      return fail(seq, typeof value.id === "string" ? value.id : null, "malformed");
    }
    const broken = checkLink(event, prev, expectedSeq);
    if (broken) return fail(broken.seq, broken.id, broken.reason);
    opts.onEvent?.(event);
    prev = event.hash;
    expectedSeq = event.seq + 1;
    count++;
  }
  if (header === null) return fail(null, null, "bad_header", 1);
  if (!ended) return fail(expectedSeq, null, "truncated", lineNo + 1);
  const { from_seq: fromSeq, prev_hash: prevHash, frontier } = header;
  return { ok: true, events: count, fromSeq, prevHash, head: prev, ...(frontier ? { frontier } : {}) };
}

/** The one-line summary the CLI prints. */
export function describeExportResult(r: ExportVerifyResult): string {
  if (r.ok) return `ok: ${r.events} events, head ${r.head} (from seq ${r.fromSeq})`;
  const where = r.brokenAt.seq === null ? `line ${r.line}` : `seq ${r.brokenAt.seq} (line ${r.line})`;
  const id = r.brokenAt.id ? ` id ${r.brokenAt.id}` : "";
  return `broken at ${where}${id}: ${r.brokenAt.reason} after ${r.events} good events`;
}

/** An export's first line, or null when it is not one (in its canonical form). */
export function parseHeader(line: string): ExportHeader | null {
  const v = parseJson(line);
  if (!isRecord(v) || v.type !== EXPORT_HEADER_TYPE || v.version !== EXPORT_VERSION) return null;
  const { from_seq: fromSeq, prev_hash: prevHash } = v;
  if (typeof fromSeq !== "number" || !Number.isSafeInteger(fromSeq) || fromSeq < 1) return null;
  if (typeof prevHash !== "string" || !HASH_RE.test(prevHash)) return null;
  const { frontier } = v;
  if (frontier !== undefined) {
    if (fromSeq === 1 || !Array.isArray(frontier) || frontier.length !== frontierLength(fromSeq - 1))
      return null;
    const canonical = (h: unknown) =>
      typeof h === "string" && BASE64_HASH.test(h) && Buffer.from(h, "base64").toString("base64") === h;
    if (!frontier.every(canonical)) return null;
  }
  const hashes = frontier as string[] | undefined;
  if (line !== headerLine(fromSeq, prevHash, hashes)) return null;
  return {
    type: EXPORT_HEADER_TYPE,
    version: EXPORT_VERSION,
    from_seq: fromSeq,
    prev_hash: prevHash,
    ...(hashes ? { frontier: hashes } : {}),
  };
}

/** An export's last line, or null when it is not a trailer. */
export function parseTrailer(line: string): ExportTrailer | null {
  const v = parseJson(line);
  if (!isRecord(v) || v.type !== EXPORT_TRAILER_TYPE) return null;
  return typeof v.events === "number" && typeof v.head === "string"
    ? { type: EXPORT_TRAILER_TYPE, events: v.events, head: v.head }
    : null;
}

function toStoredEvent(v: Record<string, unknown>): StoredEvent | null {
  if (Object.keys(v).sort().join(",") !== EVENT_KEYS) return null;
  const { seq, id, at, type, actor, campaignId, linkId, decision, reason, data, prevHash, hash } = v;
  if (typeof seq !== "number" || !Number.isSafeInteger(seq)) return null;
  if (typeof id !== "string" || typeof type !== "string" || typeof at !== "string") return null;
  if (typeof prevHash !== "string" || typeof hash !== "string") return null;
  if (!isNullableString(actor) || !isNullableString(campaignId) || !isNullableString(linkId)) return null;
  if (!isNullableString(reason)) return null;
  if (decision !== null && decision !== "allow" && decision !== "deny") return null;
  if (!isRecord(data)) return null;
  const time = new Date(at);
  if (Number.isNaN(time.getTime()) || time.toISOString() !== at) return null;
  return { seq, id, at: time, type, actor, campaignId, linkId, decision, reason, data, prevHash, hash };
}

function parseJson(line: string): unknown {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const isNullableString = (v: unknown): v is string | null => v === null || typeof v === "string";

/** Parts of a stitched export that do not join up (a missing or reordered archive, a cut file). */
export class StitchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StitchError";
  }
}

/**
 * Several exports read as one (`pnpm audit:verify-export --archive …`): retired stretches of the
 * log (`pnpm audit:archive` files) in seq order, then the live export. Yields the first part's
 * header, every event line of every part, and one trailer for the whole; throws when a part does
 * not continue the one before (its header's `prev_hash` is not that part's head) or is cut short.
 * The chain check then runs across the seams as if the log had never been split.
 */
export async function* stitchExports(
  /** Each part is opened only when its turn comes (a file read early would lose its lines). */
  parts: readonly (() => AsyncIterable<string> | Iterable<string>)[],
): AsyncGenerator<string> {
  let total = 0;
  let head: string | undefined;
  for (const [i, part] of parts.entries()) {
    let events = 0;
    let header: ExportHeader | null = null;
    let trailer: { events: unknown; head: unknown } | null = null;
    for await (const raw of part()) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (line === "") continue;
      if (header === null) {
        header = parseHeader(line);
        if (!header) throw new StitchError(`part ${i + 1}: not an audit export header`);
        if (i === 0) yield line;
        else if (header.prev_hash !== head)
          throw new StitchError(`part ${i + 1} does not continue part ${i}`);
        continue;
      }
      if (trailer !== null) throw new StitchError(`part ${i + 1}: a line after its trailer`);
      const value = parseJson(line);
      if (isRecord(value) && !("seq" in value) && value.type === EXPORT_TRAILER_TYPE) {
        trailer = { events: value.events, head: value.head };
        continue;
      }
      events++;
      yield line;
    }
    if (trailer === null || trailer.events !== events || typeof trailer.head !== "string") {
      throw new StitchError(`part ${i + 1} is cut short (no trailer, or one that miscounts its events)`);
    }
    total += events;
    head = trailer.head;
  }
  yield trailerLine(total, head ?? GENESIS);
}
