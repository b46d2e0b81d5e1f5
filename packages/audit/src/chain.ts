import { hash } from "node:crypto";
import type { AuditEventInput } from "./sink.ts";

/** `prevHash` of the first event of a chain. */
export const GENESIS = "0".repeat(64);

/** The fields of one chained event that its hash covers (everything but `prevHash` and `hash`). */
export interface ChainEvent {
  seq: number;
  id: string;
  at: Date;
  type: string;
  actor: string | null;
  campaignId: string | null;
  linkId: string | null;
  decision: "allow" | "deny" | null;
  reason: string | null;
  data: Record<string, unknown>;
}

/** One event as stored in `audit_events`: `hash = chainHash(prevHash, canonicalEvent(event))`. */
export interface StoredEvent extends ChainEvent {
  prevHash: string;
  hash: string;
}

/**
 * `checkpoint_mismatch` (stored logs only): the events no longer give the root a checkpoint this
 * log signed; one at or after `seq` and within that checkpoint was rewritten, chain recomputed.
 */
export type ChainBreakReason = "hash_mismatch" | "prev_mismatch" | "seq_gap" | "checkpoint_mismatch";

/** The first event that fails a check, named by its own seq and id. */
export interface ChainBreak {
  seq: number;
  id: string;
  reason: ChainBreakReason;
}

/**
 * `events` counts the events that verified; on failure it excludes the broken one. `head` is the
 * hash of the last event (or the starting `prevHash` for an empty chain).
 */
export type ChainResult =
  | { ok: true; events: number; head: string }
  | { ok: false; events: number; brokenAt: ChainBreak };

export interface ChainStart {
  /** `prevHash` the first event must carry. Default {@link GENESIS}. */
  prevHash?: string;
  /** seq the first event must carry. Default 1. */
  seq?: number;
}

/**
 * Deterministic JSON, with `JSON.stringify`'s value rules (`toJSON`, so a `Date` becomes its
 * ISO-8601 UTC string with milliseconds; `undefined` members dropped, `undefined` array slots and
 * non-finite numbers as `null`; BigInt refused) and object keys sorted in code-unit order at every
 * depth.
 */
export function canonicalJson(value: unknown): string {
  return encode(value, false, 0) ?? "null";
}

/**
 * The canonical form an event's hash covers: every field of {@link ChainEvent} (seq included,
 * nulls explicit), keys sorted recursively, times as `YYYY-MM-DDTHH:mm:ss.sssZ`. Extra properties
 * (such as `prevHash`/`hash` on a stored event) are ignored.
 */
export function canonicalEvent(e: ChainEvent): string {
  return canonicalJson(eventFields(e));
}

/** The hashed fields of an event as a plain object, times as ISO strings, nulls explicit. */
export function eventFields(e: ChainEvent): Record<string, unknown> {
  return {
    seq: e.seq,
    id: e.id,
    at: e.at.toISOString(),
    type: e.type,
    actor: e.actor ?? null,
    campaignId: e.campaignId ?? null,
    linkId: e.linkId ?? null,
    decision: e.decision ?? null,
    reason: e.reason ?? null,
    data: e.data ?? {},
  };
}

/** `sha256hex(prevHash + "\n" + canonical)`. */
export function chainHash(prevHash: string, canonical: string): string {
  return hash("sha256", `${prevHash}\n${canonical}`, "hex");
}

/**
 * Walks events in seq order and reports the first that breaks the chain: `seq_gap` when its seq is
 * not the previous one plus one (a deleted, moved or reordered event), `prev_mismatch` when its
 * `prevHash` is not the previous event's hash (a deleted or inserted event), `hash_mismatch` when
 * its hash does not cover its own fields (a changed column). Truncation of the newest events is
 * only visible against a head recorded elsewhere.
 */
export async function verifyChain(
  events: Iterable<StoredEvent> | AsyncIterable<StoredEvent>,
  start: ChainStart = {},
): Promise<ChainResult> {
  let prev = start.prevHash ?? GENESIS;
  let expectedSeq = start.seq ?? 1;
  let count = 0;
  for await (const e of events) {
    const brokenAt = checkLink(e, prev, expectedSeq);
    if (brokenAt) return { ok: false, events: count, brokenAt };
    prev = e.hash;
    expectedSeq = e.seq + 1;
    count++;
  }
  return { ok: true, events: count, head: prev };
}

/** Checks one event against its predecessor's hash and the seq it must carry. */
export function checkLink(e: StoredEvent, prevHash: string, expectedSeq: number): ChainBreak | null {
  if (e.seq !== expectedSeq) return { seq: e.seq, id: e.id, reason: "seq_gap" };
  if (e.prevHash !== prevHash) return { seq: e.seq, id: e.id, reason: "prev_mismatch" };
  if (e.hash !== chainHash(e.prevHash, canonicalEvent(e))) {
    return { seq: e.seq, id: e.id, reason: "hash_mismatch" };
  }
  return null;
}

/**
 * An event checked and reduced to the exact text Postgres will hand back, so its hash survives
 * the round trip: strings are well-formed with NUL replaced by U+FFFD (Postgres stores neither a
 * lone surrogate nor NUL), `data` is already canonical JSON. Immutable: later changes to the
 * caller's object cannot change what gets hashed.
 */
export interface PreparedEvent {
  readonly type: string;
  readonly at: Date;
  readonly actor: string | null;
  readonly campaignId: string | null;
  readonly linkId: string | null;
  readonly decision: "allow" | "deny" | null;
  readonly reason: string | null;
  /** Canonical JSON of `data` (an object). */
  readonly dataJson: string;
  /** `at` as ISO-8601 with milliseconds. */
  readonly atIso: string;
  /** The canonical form around `id` and `seq`: `[before id, between id and seq, after seq]`. */
  readonly canonicalParts: readonly [string, string, string];
}

/**
 * Validates and prepares an event for the chain. Throws `TypeError` for one that cannot be stored
 * at all: a bad time, an empty type, a bad decision, data that is not a JSON object.
 */
export function prepareEvent(e: AuditEventInput): PreparedEvent {
  if (!(e.at instanceof Date) || Number.isNaN(e.at.getTime())) {
    throw new TypeError("audit event `at` must be a valid Date");
  }
  // Postgres parses four-digit years only; outside them every retry of the batch would fail.
  const year = e.at.getUTCFullYear();
  if (year < 1 || year > 9999) throw new TypeError("audit event `at` must fall in years 1..9999");
  if (typeof e.type !== "string" || e.type === "") throw new TypeError("audit event `type` is required");
  const decision = e.decision ?? null;
  if (decision !== null && decision !== "allow" && decision !== "deny") {
    throw new TypeError("audit event `decision` must be allow, deny or null");
  }
  const dataJson = e.data === undefined || e.data === null ? "{}" : encode(e.data, true, 0);
  if (dataJson === undefined || !dataJson.startsWith("{")) {
    throw new TypeError("audit event `data` must be a JSON object");
  }
  const type = cleanString(e.type);
  const actor = optString(e.actor);
  const campaignId = indexed(optString(e.campaignId), "campaignId");
  const linkId = indexed(optString(e.linkId), "linkId");
  const reason = optString(e.reason);
  const atIso = e.at.toISOString();
  // Keys in canonical (sorted) order; id and seq are only known under the chain lock.
  const canonicalParts = [
    `{"actor":${nullable(actor)},"at":"${atIso}","campaignId":${nullable(campaignId)},"data":${dataJson},` +
      `"decision":${nullable(decision)},"id":`,
    `,"linkId":${nullable(linkId)},"reason":${nullable(reason)},"seq":`,
    `,"type":${JSON.stringify(type)}}`,
  ] as const;
  return {
    type,
    at: new Date(e.at.getTime()),
    actor,
    campaignId,
    linkId,
    decision,
    reason,
    dataJson,
    atIso,
    canonicalParts,
  };
}

/** An input event in the form it will be stored: nulls filled in, data copied through JSON. */
export type NormalizedEventInput = Omit<ChainEvent, "seq" | "id">;

/** {@link prepareEvent} with `data` parsed back into an object: what a stored event will read back as. */
export function normalizeEvent(e: AuditEventInput): NormalizedEventInput {
  const p = prepareEvent(e);
  return {
    type: p.type,
    at: new Date(p.at.getTime()),
    actor: p.actor,
    campaignId: p.campaignId,
    linkId: p.linkId,
    decision: p.decision,
    reason: p.reason,
    data: JSON.parse(p.dataJson) as Record<string, unknown>,
  };
}

/**
 * `canonicalEvent` of a prepared event once it has a seq and id, built without a round trip
 * through objects. Byte-identical to `canonicalEvent` of the event as stored (tested).
 */
export function canonicalPrepared(p: PreparedEvent, seq: number, id: string): string {
  const [beforeId, beforeSeq, rest] = p.canonicalParts;
  return `${beforeId}${JSON.stringify(id)}${beforeSeq}${seq}${rest}`;
}

/** Longest `campaignId`/`linkId`: both are indexed, and an over-long btree key fails the insert. */
export const MAX_INDEXED_LENGTH = 256;

function indexed(s: string | null, name: string): string | null {
  if (s !== null && s.length > MAX_INDEXED_LENGTH) {
    throw new TypeError(`audit event \`${name}\` longer than ${MAX_INDEXED_LENGTH} characters`);
  }
  return s;
}

const nullable = (s: string | null): string => (s === null ? "null" : JSON.stringify(s));

const optString = (s: string | null | undefined): string | null =>
  s === null || s === undefined ? null : cleanString(String(s));

// biome-ignore lint/suspicious/noControlCharactersInRegex: NUL is exactly what must be found
const NEEDS_CLEANING = /[\u0000\uD800-\uDFFF]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function cleanString(s: string): string {
  if (!NEEDS_CLEANING.test(s)) return s;
  return s.replace(LONE_SURROGATE, "\uFFFD").replaceAll("\u0000", "\uFFFD");
}

// Deeper than any audit payload needs; also how a circular structure is refused.
const MAX_DEPTH = 64;

/** JSON text of `v`, keys sorted; `undefined` where JSON omits the value. */
function encode(v: unknown, clean: boolean, depth: number): string | undefined {
  switch (typeof v) {
    case "string":
      return JSON.stringify(clean ? cleanString(v) : v);
    case "number":
      return Number.isFinite(v) ? JSON.stringify(v) : "null";
    case "boolean":
      return v ? "true" : "false";
    case "undefined":
    case "function":
    case "symbol":
      return undefined;
    case "bigint":
      throw new TypeError("cannot encode a BigInt as JSON");
  }
  if (v === null) return "null";
  if (depth > MAX_DEPTH) throw new TypeError("JSON value nested too deeply (or circular)");
  const obj = v as { toJSON?: unknown };
  if (typeof obj.toJSON === "function")
    return encode((obj as { toJSON(): unknown }).toJSON(), clean, depth + 1);
  const proto: unknown = Object.getPrototypeOf(v);
  // Boxed primitives only: skips three prototype walks for the usual plain objects and arrays.
  if (proto !== Object.prototype && proto !== Array.prototype && proto !== null) {
    if (v instanceof Number || v instanceof String || v instanceof Boolean)
      return encode(v.valueOf(), clean, depth + 1);
  }
  if (Array.isArray(v)) {
    let out = "[";
    for (let i = 0; i < v.length; i++) {
      if (i > 0) out += ",";
      out += encode(v[i], clean, depth + 1) ?? "null";
    }
    return `${out}]`;
  }
  const record = v as Record<string, unknown>;
  const keys = Object.keys(record);
  if (clean && keys.some((k) => NEEDS_CLEANING.test(k))) {
    // Two keys may clean to the same one: keep the later, as JSON.parse and jsonb would.
    const cleaned: Record<string, unknown> = Object.create(null);
    for (const k of keys) cleaned[cleanString(k)] = record[k];
    return encode(cleaned, clean, depth);
  }
  keys.sort();
  let out = "{";
  for (const key of keys) {
    const encoded = encode(record[key], clean, depth + 1);
    if (encoded === undefined) continue;
    if (out.length > 1) out += ",";
    out += `${JSON.stringify(key)}:${encoded}`;
  }
  return `${out}}`;
}
