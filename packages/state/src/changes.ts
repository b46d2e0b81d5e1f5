import { SCOPES, type Scope } from "@phaselock/core";
import {
  type Campaign,
  type Contest,
  type PhaseClosure,
  type Revocation,
  storedRevocationSchema,
} from "@phaselock/policy";
import { z } from "zod";

/** One policy write, as logged in `policy_changes` by its transaction. */
export type PolicyChange =
  | { type: "revocation"; revocation: Revocation }
  /** `closures`: phases this write ended early (the end route, or a timeline that cut them short). */
  | { type: "contest"; contest: Contest; closures?: ClosureChange[] }
  | { type: "campaign"; campaign: Campaign }
  /** `scopes: null` withdraws the entitlement. */
  | { type: "entitlement"; campaignId: string; phase: string; scopes: Scope[] | null }
  /** A key was added or retired: readers re-read the published keys from Postgres. */
  | { type: "signing-key"; kid: string; publicJwk: Record<string, string> }
  /** Emergency revocation: the key is dropped at once and never trusted again. */
  | { type: "signing-key-revoked"; kid: string; reason: string }
  | { type: "api-key-deleted"; id: string }
  | { type: "link-suspended"; linkId: string; reason: string }
  /** A volunteer's session ended: gateways drop it from their cache (Postgres holds the truth). */
  | { type: "session-ended"; sessionId: string }
  | { type: "session-rotated"; sessionId: string };

/** What a gateway needs of a phase closure. */
export type ClosureChange = Pick<PhaseClosure, "contestId" | "phase" | "closedAt">;

export type PolicyChangeType = PolicyChange["type"];

/** A change stamped with the `policy_state.version` its transaction produced (a log row). */
export interface ChangeMessage {
  version: number;
  change: PolicyChange;
}

// No length caps: a valid message refused here would cost a reload on every instance.
const id = z.string().min(1);
const date = z.iso.datetime({ offset: true }).transform((s) => new Date(s));

const revocationSchema = storedRevocationSchema(date);

const phaseSchema = z.object({ name: id, startsAt: date, endsAt: date, memberData: z.boolean() });

const contestSchema = z.object({ id, name: z.string(), phases: z.array(phaseSchema) });

const limit = z.number().int().positive().optional();
const campaignSchema = z.object({
  id,
  name: z.string(),
  contestId: id,
  limits: z.object({ requestsPerMinute: limit, recordsPerHour: limit }),
  // Absent in changes logged before campaigns had a contact.
  contact: z.string().optional(),
});

const changeSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("revocation"), revocation: revocationSchema }),
  z.object({
    type: z.literal("contest"),
    contest: contestSchema,
    closures: z.array(z.object({ contestId: id, phase: id, closedAt: date })).optional(),
  }),
  z.object({ type: z.literal("campaign"), campaign: campaignSchema }),
  z.object({
    type: z.literal("entitlement"),
    campaignId: id,
    phase: id,
    scopes: z.array(z.enum(SCOPES)).nullable(),
  }),
  z.object({ type: z.literal("signing-key"), kid: id, publicJwk: z.record(z.string(), z.string()) }),
  z.object({ type: z.literal("signing-key-revoked"), kid: id, reason: z.string() }),
  z.object({ type: z.literal("api-key-deleted"), id }),
  z.object({ type: z.literal("link-suspended"), linkId: id, reason: z.string() }),
  z.object({ type: z.literal("session-ended"), sessionId: id }),
  z.object({ type: z.literal("session-rotated"), sessionId: id }),
]);

const messageSchema = z.object({
  version: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  change: changeSchema,
});

/** Wire form of a message: JSON, dates as ISO-8601 strings. */
export function encodeChange(msg: ChangeMessage): string {
  return JSON.stringify(msg);
}

/**
 * Parses and validates a wire message, restoring dates. Returns `undefined` for anything
 * malformed: the caller must treat that as a lost message (a gap) and reload.
 */
export function decodeChange(raw: string): ChangeMessage | undefined {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return undefined;
  }
  const parsed = messageSchema.safeParse(json);
  return parsed.success ? parsed.data : undefined;
}

/**
 * A logged change as read from `policy_changes` (dates are ISO strings in jsonb), validated by
 * the one change schema. `undefined` when unreadable: the reader must reload in full.
 */
export function decodeLoggedChange(row: { version: number; change: unknown }): ChangeMessage | undefined {
  const parsed = messageSchema.safeParse(row);
  return parsed.success ? parsed.data : undefined;
}

/**
 * What the feed carries: at most a version number, a hint to read Postgres sooner. Nothing in it
 * is authority; a version Postgres does not hold changes nothing.
 */
export interface ChangeHint {
  version: number;
}

const hintSchema = z.object({ version: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER) });

export function encodeHint(hint: ChangeHint): string {
  return JSON.stringify({ version: hint.version });
}

/** `undefined` for anything that is not a hint; the caller just reads the log (never trusts it). */
export function decodeHint(raw: string): ChangeHint | undefined {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return undefined;
  }
  const parsed = hintSchema.safeParse(json);
  return parsed.success ? { version: parsed.data.version } : undefined;
}
