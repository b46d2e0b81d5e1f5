import { setTimeout as delay } from "node:timers/promises";
import { epochSeconds, randomBase64url, randomId, type Scope, sha256Hex } from "@phaselock/core";
import { loadClosures, type NewLink } from "@phaselock/db";
import {
  type Campaign,
  type Contest,
  checkIssuance,
  type IssuanceRefusal,
  linkValidity,
  type Phase,
  type Revocation,
} from "@phaselock/policy";
import { TOKEN_AUDIENCE } from "@phaselock/tokens";
import { sql } from "drizzle-orm";
import type { Principal, TokenServiceDeps } from "./context.ts";
import { toCsv } from "./csv.ts";
import { type AuditCaller, auditedChange } from "./effects.ts";
import { fail } from "./errors.ts";
import { canActOnCampaign } from "./middleware/auth.ts";
import { revocationJson } from "./revocation-json.ts";

const DAY = 86_400;
export const DEFAULT_TTL_SECONDS = 7 * DAY;
export const MAX_TTL_SECONDS = 90 * DAY;
export const DEFAULT_MAX_USES = 5;
export const MAX_MAX_USES = 1000;
export const MAX_BATCH = 10_000;

/** What issuing links needs of the service: no HTTP request in sight. */
export type IssuanceDeps = Pick<
  TokenServiceDeps,
  "db" | "repos" | "keys" | "clock" | "journal" | "config" | "metrics"
>;

/** Who asks for the links: the authenticated principal, and its request for the audit trail. */
export interface IssuanceCaller extends AuditCaller {
  principal: Principal;
}

/** A validated request for one or more links of one campaign and phase. */
export interface IssueRequest {
  campaignId: string;
  phase: string;
  scopes: Scope[];
  ttlSeconds: number;
  maxUses: number;
  volunteers: { ref: string; name?: string | undefined }[];
}

export interface IssuedLink {
  id: string;
  url: string;
  token: string;
  notBefore: string;
  expiresAt: string;
  volunteer: { ref: string; name: string | null };
  /** The volunteer's active links of the phase this one replaced (revoked): `reissue=true`. */
  replaces?: string[];
}

/**
 * What a batch does for a volunteer who already holds an active link of the phase: `issue`
 * another anyway (a single link), `skip` them (a batch's default, so a re-upload never doubles
 * links), or `reissue`: revoke the held links and issue a new one, in one transaction.
 */
export type HeldLinkRule = "issue" | "skip" | "reissue";

/** A volunteer a batch left out: they hold active links of the phase (`linkIds`). */
export interface SkippedVolunteer {
  ref: string;
  name: string | null;
  linkIds: string[];
}

export interface BatchOutcome {
  links: IssuedLink[];
  skipped: SkippedVolunteer[];
  /** Policy version of the revocations a reissue wrote, to publish; null when none. */
  policyVersion: number | null;
  /** The revocations a reissue wrote. */
  revoked: Revocation[];
}

/** Reason recorded on the revocations a reissue writes. */
export const REISSUE_REASON = "reissued: a new link replaces it";

const REFUSALS: Record<IssuanceRefusal, string> = {
  not_found: "No phase of that name in the campaign's contest.",
  scope_not_issuable: "members:export is never issuable through a link.",
  phase_closed: "The phase has ended; links can no longer be issued for it.",
  not_entitled:
    "The campaign is not entitled to every requested scope in that phase, or the phase allows no member data.",
};

const iso = (seconds: number): string => new Date(seconds * 1000).toISOString();

/**
 * Batches being signed in this process. They share its one crypto thread pool, so a batch's
 * signatures queue behind the others': {@link issueBatch} then waits for its own before it takes
 * the chain lock.
 */
let batchesSigning = 0;

/** `work` (a batch's signing) counted in {@link batchesSigning} until it settles. */
export function signingBatch<T>(work: Promise<T>): Promise<T> {
  batchesSigning++;
  return work.finally(() => {
    batchesSigning--;
  });
}

/**
 * Everything issuance checks, in the contract's order: (validation already passed) unknown
 * campaign or phase → 404, another campaign's coordinator → 403, then `checkIssuance`'s
 * `scope_not_issuable` → 422, `phase_closed` → 409, `not_entitled` → 403.
 */
async function authorizeIssuance(
  deps: IssuanceDeps,
  principal: Principal,
  req: IssueRequest,
  now: Date,
): Promise<{ campaign: Campaign; contest: Contest; phase: Phase }> {
  const campaign = await deps.repos.campaigns.get(req.campaignId);
  if (!campaign) fail("not_found", "No such campaign.");
  const contest = await deps.repos.contests.get(campaign.contestId);
  if (!contest?.phases.some((p) => p.name === req.phase)) {
    fail("not_found", `No phase of that name in contest "${campaign.contestId}".`);
  }
  if (!canActOnCampaign(principal, campaign.id))
    fail("forbidden", "This API key may only issue links of its own campaign.");
  const entitled = await deps.repos.entitlements.get(campaign.id, req.phase);
  const decision = checkIssuance({
    contest,
    phaseName: req.phase,
    entitled: entitled ? new Set(entitled) : undefined,
    requested: req.scopes,
    now,
  });
  if (!decision.ok) fail(decision.code, REFUSALS[decision.code]);
  return { campaign, contest, phase: decision.phase };
}

/**
 * Checks, signs and stores the links, all or nothing (one transaction, multi-row inserts), and
 * audits each (plus one `links.batch_issued` for a batch). Refusals throw a `PhaselockError`
 * with the problem code.
 */
export async function issueLinks(
  deps: IssuanceDeps,
  caller: IssuanceCaller,
  req: IssueRequest,
): Promise<IssuedLink[]> {
  return (await issueBatch(deps, caller, req, { held: "issue" })).links;
}

/**
 * {@link issueLinks} with a rule for volunteers who already hold an active link of the phase
 * (one query for all of them): skipped and reported, or their links revoked (a `link`
 * revocation each, audited) and new ones issued, in the issuing transaction.
 */
export async function issueBatch(
  deps: IssuanceDeps,
  caller: IssuanceCaller,
  req: IssueRequest,
  opts: { held: HeldLinkRule; source?: "json" | "csv" },
): Promise<BatchOutcome> {
  const { principal } = caller;
  // One instant for the checks and the validity window, so they cannot disagree at a phase end.
  let now = deps.clock.now();
  let { campaign, contest, phase } = await authorizeIssuance(deps, principal, req, now);
  // A closure covers the links of its phase issued up to its second (token times are whole
  // seconds), so a link issued in that second, after a timeline re-opened the phase, would be
  // dead on arrival: wait for the next second, or refuse if the clock has not moved on.
  const closedAt = (await loadClosures(deps.db, contest.id)).findLast(
    (c) => c.phase === phase.name,
  )?.closedAt;
  if (closedAt && epochSeconds(closedAt) >= epochSeconds(now)) {
    await delay(1000 - (now.getTime() % 1000));
    now = deps.clock.now();
    if (epochSeconds(closedAt) >= epochSeconds(now)) {
      fail(
        "phase_closed",
        "The phase was switched off within this second; issue the link again in a moment.",
      );
    }
    ({ campaign, contest, phase } = await authorizeIssuance(deps, principal, req, now));
  }
  const { iat, nbf, exp } = linkValidity({ phase, now, ttlSeconds: req.ttlSeconds });
  const scopes = [...new Set(req.scopes)];

  const refs = req.volunteers.map((v) => v.ref);
  const held =
    opts.held === "issue"
      ? new Map<string, string[]>()
      : await deps.repos.links.activeByVolunteer(campaign.id, phase.name, refs, now);
  const skipped: SkippedVolunteer[] = [];
  const volunteers =
    opts.held === "skip"
      ? req.volunteers.filter((v) => {
          const linkIds = held.get(v.ref);
          if (!linkIds) return true;
          skipped.push({ ref: v.ref, name: v.name ?? null, linkIds });
          return false;
        })
      : req.volunteers;
  if (volunteers.length === 0) return { links: [], skipped, policyVersion: null, revoked: [] };
  const signer = deps.keys.signer();

  // Short link codes (128 random bits, 22 characters): only their sha256 is stored.
  const codes = volunteers.map(() => randomBase64url(16));
  const rows: NewLink[] = volunteers.map((v, i) => ({
    id: randomId("lnk"),
    codeHash: sha256Hex(codes[i]!),
    campaignId: campaign.id,
    contestId: contest.id,
    phase: phase.name,
    volunteerRef: v.ref,
    volunteerName: v.name ?? null,
    scopes,
    notBefore: new Date(nbf * 1000),
    expiresAt: new Date(exp * 1000),
    maxUses: req.maxUses,
    issuedBy: principal.actor,
    issuedAt: now,
    kid: signer.kid,
  }));

  // Signing (the crypto thread pool) runs while Postgres inserts the links and (unless other
  // batches are signing) appends their events: the commit waits for the tokens, so a signing
  // failure still rolls everything back.
  const signing = signingBatch(
    signer.signMany(
      {
        iss: deps.config.issuer,
        aud: TOKEN_AUDIENCE,
        iat,
        nbf,
        exp,
        cmp: campaign.id,
        cst: contest.id,
        phs: phase.name,
        scp: scopes,
      },
      rows.map((row) => ({ sub: row.volunteerRef, jti: row.id })),
    ),
  );
  // Observed here too, so a transaction that fails first leaves no unhandled rejection.
  signing.catch(() => {});

  const batchId = rows.length > 1 || opts.held !== "issue" ? randomId("bat") : undefined;
  let tokens: string[] = [];
  let keyChanged = false;
  // Volunteers whose held links this batch revokes, as found under the lock below.
  let replaced = new Map<string, string[]>();
  const revokedLinks: Revocation[] = [];
  // The links and their events commit together: a crash mid-batch leaves neither.
  const policyVersion = await auditedChange(deps, caller, async ({ tx, repos, record, beforeCommit }) => {
    let version: number | null = null;
    if (opts.held !== "issue") {
      // Batches of one campaign and phase take turns from here to the commit, so the held links
      // read below are the ones that stand: two uploads of one sheet cannot both issue.
      await tx.execute(
        sql`select pg_advisory_xact_lock(hashtextextended(${`phaselock:issue:${campaign.id}:${phase.name}`}, 0))`,
      );
      const current = await repos.links.activeByVolunteer(
        campaign.id,
        phase.name,
        rows.map((r) => r.volunteerRef),
        now,
        tx,
      );
      if (opts.held === "skip" && current.size > 0) {
        fail(
          "conflict",
          `${current.size} of these volunteers were issued links of this phase while this batch was being prepared; send it again to skip them.`,
        );
      }
      if (opts.held === "reissue") {
        replaced = current;
        const revoked = await repos.revocations.insertForLinks(tx, {
          linkIds: [...current.values()].flat(),
          campaignId: campaign.id,
          contestId: campaign.contestId,
          reason: REISSUE_REASON,
          actor: principal.actor,
          effectiveAt: now,
        });
        version = revoked.version;
        revokedLinks.push(...revoked.revocations);
        for (const r of revoked.revocations) {
          record({
            type: "revocation.created",
            campaignId: campaign.id,
            linkId: r.linkId ?? null,
            data: { revocation: revocationJson(r), version: version! },
          });
        }
      }
    }
    await deps.repos.links.insertMany(rows, tx);
    if (!(await deps.keys.recordIssued(signer.kid, new Date(exp * 1000), tx))) {
      // Retired or revoked since this batch took it (here or by another instance, whose feed
      // hint may never come): nothing it signed leaves, and the next request signs anew.
      keyChanged = true;
      fail(
        "unavailable",
        "The signing key was rotated or revoked while these links were being issued; none were issued. Send the request again.",
      );
    }
    if (batchesSigning > 1) {
      // Other batches are signing in this process: this one's signatures queue behind theirs in
      // the pool. They are awaited before the append, so the chain lock (which every gateway's
      // audit append waits for) is held for the append and the commit, not the pool's backlog.
      tokens = await signing;
    } else {
      // Alone, the signatures end before the append does (35–140 ms before, for 10,000 links:
      // bench/analysis.md). The events name no token, so the append need not wait for them:
      // only the commit does.
      beforeCommit(
        signing.then((signed) => {
          tokens = signed;
        }),
      );
    }
    // One event per link. A batch's links share their terms: they are written once, in the
    // batch's event, and each link's event names the batch (docs/design.md "Audit").
    const terms = {
      contestId: contest.id,
      phase: phase.name,
      scopes,
      notBefore: iso(nbf),
      expiresAt: iso(exp),
      maxUses: req.maxUses,
      kid: signer.kid,
    };
    for (const row of rows) {
      const replaces = replaced.get(row.volunteerRef);
      record({
        type: "link.issued",
        campaignId: campaign.id,
        linkId: row.id,
        decision: "allow",
        data: batchId
          ? { volunteerRef: row.volunteerRef, batchId, ...(replaces ? { replaces } : {}) }
          : { volunteerRef: row.volunteerRef, ...terms },
      });
    }
    if (batchId) {
      record({
        type: "links.batch_issued",
        campaignId: campaign.id,
        decision: "allow",
        data: {
          batchId,
          count: rows.length,
          ...terms,
          ...(skipped.length > 0 ? { skipped: skipped.length } : {}),
          ...(replaced.size > 0 ? { reissued: replaced.size } : {}),
          ...(opts.source ? { source: opts.source } : {}),
        },
      });
    }
    return version;
  }).catch(async (err: unknown) => {
    // After the rollback: a refresh inside the transaction would wait on it (one embedded connection).
    if (keyChanged) await deps.keys.refresh().catch(() => false);
    throw err;
  });
  deps.metrics?.issued(rows.length);

  const base = deps.config.publicGatewayUrl;
  const links = rows.map((row, i): IssuedLink => {
    const token = tokens[i]!;
    const replaces = replaced.get(row.volunteerRef);
    return {
      id: row.id,
      url: `${base}/l/${codes[i]!}`,
      token,
      notBefore: iso(nbf),
      expiresAt: iso(exp),
      volunteer: { ref: row.volunteerRef, name: row.volunteerName ?? null },
      ...(replaces ? { replaces } : {}),
    };
  });
  return { links, skipped, policyVersion, revoked: revokedLinks };
}

/** One volunteer of a batch as sent: from a sheet, its row and passed-through cells. */
export interface BatchVolunteer {
  ref: string;
  name?: string | undefined;
  row?: number;
  extra?: Record<string, string>;
}

/** Columns the answer adds after the sheet's own: a sheet may not use these names. */
export const ANSWER_COLUMNS = ["id", "url", "notBefore", "expiresAt", "status"] as const;

/** What happened to one volunteer of a batch, in the CSV answer's `status` column. */
export type BatchStatus = "issued" | "reissued" | "skipped";

interface AnswerRow {
  volunteer: BatchVolunteer;
  status: BatchStatus;
  link?: IssuedLink;
  /** the held links of a skipped volunteer */
  held?: string[];
}

/**
 * A batch's outcome as the CSV file a coordinator downloads, one row per volunteer in the order
 * sent: `ref,name`, the sheet's passed-through columns, then `id,url,notBefore,expiresAt,status`.
 * A skipped volunteer's row names the links it holds in `id` (space-separated) and has no `url`:
 * a link's token exists only when it is issued.
 */
export function batchAnswerCsv(
  volunteers: readonly BatchVolunteer[],
  outcome: { links: readonly IssuedLink[]; skipped: readonly SkippedVolunteer[] },
  extraColumns: readonly string[] = [],
): string {
  const issued = new Map(outcome.links.map((l) => [l.volunteer.ref, l]));
  const skipped = new Map(outcome.skipped.map((s) => [s.ref, s]));
  const rows: AnswerRow[] = volunteers.map((v) => {
    const link = issued.get(v.ref);
    if (link) return { volunteer: v, status: link.replaces ? "reissued" : "issued", link };
    return { volunteer: v, status: "skipped", held: skipped.get(v.ref)?.linkIds ?? [] };
  });
  return toCsv(
    [
      { header: "ref", value: (r: AnswerRow) => r.volunteer.ref },
      { header: "name", value: (r: AnswerRow) => r.link?.volunteer.name ?? r.volunteer.name ?? null },
      ...extraColumns.map((col) => ({
        header: col,
        value: (r: AnswerRow) => r.volunteer.extra?.[col] ?? null,
      })),
      { header: "id", value: (r: AnswerRow) => r.link?.id ?? r.held?.join(" ") ?? null },
      { header: "url", value: (r: AnswerRow) => r.link?.url ?? null },
      { header: "notBefore", value: (r: AnswerRow) => r.link?.notBefore ?? null },
      { header: "expiresAt", value: (r: AnswerRow) => r.link?.expiresAt ?? null },
      { header: "status", value: (r: AnswerRow) => r.status },
    ],
    rows,
  );
}

/** Issued links as CSV (`ref,name,id,url,notBefore,expiresAt,status`). */
export const issuedLinksCsv = (links: readonly IssuedLink[]): string =>
  batchAnswerCsv(
    links.map((l) => ({ ref: l.volunteer.ref, name: l.volunteer.name ?? undefined })),
    { links, skipped: [] },
  );
