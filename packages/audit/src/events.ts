import type { AuditEventInput } from "./event-input.ts";

/** The columns every event may set; each catalogue entry says which of them it requires. */
type Columns = Omit<AuditEventInput, "type" | "data">;

type Iso = string;
type Version = { version: number };

interface PhaseRecord {
  name: string;
  startsAt: Iso;
  endsAt: Iso;
  memberData: boolean;
}

interface RevocationRecord {
  id: string;
  scope: string;
  linkId: string | null;
  volunteerRef: string | null;
  campaignId: string | null;
  contestId: string | null;
  phase: string | null;
  reason: string;
  actor: string;
  effectiveAt: Iso;
  createdAt: Iso;
}

/** A gateway event: the volunteer ref as actor; never the client's clear IP, only its keyed hash. */
type GatewayColumns = { actor: string | null | undefined; campaignId: string | null | undefined };

/**
 * Every audit event type with the columns it must set and the shape of its `data` (see
 * docs/design.md "Audit"). Token-service events also carry the `requestId` of their request.
 */
export interface AuditCatalogue {
  "link.issued": {
    columns: { campaignId: string; linkId: string; decision: "allow" };
    /**
     * A single link carries its terms. A link of a batch carries its volunteer and `batchId` only:
     * the terms every link of the batch shares are in the batch's `links.batch_issued` event, written
     * in the same transaction (10,000 copies of them were half the cost of issuing a batch).
     */
    data:
      | {
          volunteerRef: string;
          contestId: string;
          phase: string;
          scopes: string[];
          notBefore: Iso;
          expiresAt: Iso;
          maxUses: number;
          kid: string;
        }
      | {
          volunteerRef: string;
          batchId: string;
          /** links of the volunteer this one replaces (revoked in its transaction: `reissue=true`) */
          replaces?: string[];
        };
  };
  "links.batch_issued": {
    columns: { campaignId: string; decision: "allow" };
    data: {
      batchId: string;
      count: number;
      contestId: string;
      phase: string;
      scopes: string[];
      notBefore: Iso;
      expiresAt: Iso;
      maxUses: number;
      /** the signing key of every link of the batch */
      kid: string;
      /** volunteers left out because they hold an active link of the phase */
      skipped?: number;
      /** active links revoked and issued again (`reissue=true`) */
      reissued?: number;
      source?: "json" | "csv";
    };
  };
  "link.redeemed": {
    columns: GatewayColumns & { linkId: string; decision: "allow" };
    /** `session`: the id (`ses_…`) of the session opened or continued, never its credential */
    data: { ipHash: string | null; uses: number; session: string; continued?: boolean };
  };
  "session.ended": {
    columns: GatewayColumns & { linkId: string };
    data: { session: string; ipHash: string | null };
  };
  "link.suspended": {
    columns: { actor: "gateway"; campaignId: string; linkId: string; reason: "suspended" };
    data: { why: string; ipHash: string | null };
  };
  /** A gateway decision, allowed or denied (landing-page refusals included). */
  access: {
    columns: GatewayColumns & {
      linkId: string | null | undefined;
      decision: "allow" | "deny";
      reason: string | null;
    };
    data: {
      /** the route table's pattern (`GET /members/:id`), or `unmapped`: never the path as sent */
      route: string;
      /** SHA-256 (hex) of the request target as sent, path and query */
      pathHash?: string;
      ipHash: string | null;
      status?: number;
      upstream?: string;
      record?: string | null;
    };
  };
  /**
   * Denials without a valid credential (token_missing, token_invalid, session_required…) from one
   * client hash in one UTC minute, folded into one event (anonymous.ts): an unbounded stream of
   * garbage requests costs one row per client and minute.
   */
  "access.anonymous_denied": {
    columns: { decision: "deny"; reason: "anonymous" };
    data: {
      /** keyed hash of the client address; `null` for clients with none, `overflow` past the bound */
      ipHash: string | null;
      /** the minute's start, ISO */
      minute: Iso;
      count: number;
      /** denials per refusal code */
      reasons: Record<string, number>;
      /** denials per route pattern */
      routes: Record<string, number>;
      firstAt: Iso;
      lastAt: Iso;
    };
  };
  "revocation.created": {
    columns: { campaignId: string | null; linkId: string | null };
    data: { revocation: RevocationRecord } & Version;
  };
  "contest.replaced": { columns: object; data: { contestId: string; phases: PhaseRecord[] } & Version };
  /** A phase switched off early: by the end route (`end`) or by a timeline that cut it short. */
  "phase.ended": {
    columns: object;
    data: {
      contestId: string;
      phase: string;
      closedAt: Iso;
      reason: string;
      cause: "end" | "timeline";
    } & Version;
  };
  "campaign.upserted": {
    columns: { campaignId: string };
    data: {
      id: string;
      name: string;
      contestId: string;
      limits: { requestsPerMinute?: number; recordsPerHour?: number };
    } & Version;
  };
  "entitlement.granted": {
    columns: { campaignId: string };
    data: { phase: string; scopes: string[] } & Version;
  };
  "entitlement.withdrawn": {
    columns: { campaignId: string };
    data: { phase: string; removed: boolean } & Version;
  };
  "key.rotated": { columns: object; data: { kid: string; previousKid: string | null } & Version };
  "key.revoked": {
    columns: object;
    data: { kid: string; reason: string; rotatedTo: string | null } & Version;
  };
  "api_key.created": {
    columns: { campaignId: string | null };
    data: { keyId: string; role: string; label: string | null };
  };
  "api_key.deleted": { columns: object; data: { keyId: string } & Version };
  /** Written by the audit writer itself: an event it could not store, kept as a marker. */
  "audit.invalid_event": { columns: object; data: { type: string; error: string } };
  /**
   * Written by the token service when a new log moved an earlier log's checkpoint notes aside:
   * how many, the subfolder they are kept in, the newest size of this origin among them.
   */
  "audit.notes_superseded": {
    columns: object;
    data: { moved: number; folder: string; newest: number | null };
  };
  /** Written by the audit writer itself: events lost while the queue was full. */
  "audit.dropped": { columns: object; data: { count: number; firstAt: Iso; lastAt: Iso } };
}

export type AuditEventType = keyof AuditCatalogue;

/** One event of the catalogue: a caller can neither invent a type nor leave out a field. */
export type AuditEvent = {
  [T in AuditEventType]: Columns &
    AuditCatalogue[T]["columns"] & { type: T; data: AuditCatalogue[T]["data"] & { requestId?: string } };
}[AuditEventType];

/** An event of type `T`. */
export type AuditEventOf<T extends AuditEventType> = Extract<AuditEvent, { type: T }>;
