import { randomBase64url, randomId, type Scope, sha256Hex } from "@phaselock/core";
import type { NewLink } from "@phaselock/db";
import {
  type Campaign,
  type Contest,
  checkIssuance,
  type IssuanceRefusal,
  type LinkClaims,
  linkValidity,
  type Phase,
} from "@phaselock/policy";
import { TOKEN_AUDIENCE } from "@phaselock/tokens";
import type { Principal, TokenServiceDeps } from "./context.ts";
import { toCsv } from "./csv.ts";
import { type AuditCaller, auditedChange } from "./effects.ts";
import { fail } from "./errors.ts";
import { canActOnCampaign } from "./middleware/auth.ts";

const DAY = 86_400;
export const DEFAULT_TTL_SECONDS = 7 * DAY;
export const MAX_TTL_SECONDS = 90 * DAY;
export const DEFAULT_MAX_USES = 5;
export const MAX_MAX_USES = 1000;
export const MAX_BATCH = 10_000;
/** Tokens signed concurrently: enough to keep the thread pool busy without a 10,000-promise burst. */
const SIGN_CHUNK = 256;

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
}

const REFUSALS: Record<IssuanceRefusal, string> = {
  not_found: "No phase of that name in the campaign's contest.",
  scope_not_issuable: "members:export is never issuable through a link.",
  phase_closed: "The phase has ended; links can no longer be issued for it.",
  not_entitled:
    "The campaign is not entitled to every requested scope in that phase, or the phase allows no member data.",
};

const iso = (seconds: number): string => new Date(seconds * 1000).toISOString();

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
  const { principal } = caller;
  // One instant for the checks and the validity window, so they cannot disagree at a phase end.
  const now = deps.clock.now();
  const { campaign, contest, phase } = await authorizeIssuance(deps, principal, req, now);
  const { iat, nbf, exp } = linkValidity({ phase, now, ttlSeconds: req.ttlSeconds });
  const signer = deps.keys.signer();
  const scopes = [...new Set(req.scopes)];

  // Short link codes (128 random bits, 22 characters): only their sha256 is stored.
  const codes = req.volunteers.map(() => randomBase64url(16));
  const rows: NewLink[] = req.volunteers.map((v, i) => ({
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

  const tokens: string[] = [];
  for (let i = 0; i < rows.length; i += SIGN_CHUNK) {
    const chunk = rows.slice(i, i + SIGN_CHUNK).map((row) => {
      const claims: LinkClaims = {
        iss: deps.config.issuer,
        aud: TOKEN_AUDIENCE,
        sub: row.volunteerRef,
        jti: row.id,
        iat,
        nbf,
        exp,
        cmp: campaign.id,
        cst: contest.id,
        phs: phase.name,
        scp: scopes,
      };
      return signer.sign(claims);
    });
    tokens.push(...(await Promise.all(chunk)));
  }

  const batchId = rows.length > 1 ? randomId("bat") : undefined;
  // The links and their events commit together: a crash mid-batch leaves neither.
  await auditedChange(deps, caller, async ({ tx, record }) => {
    await deps.repos.links.insertMany(rows, tx);
    await deps.keys.recordIssued(signer.kid, new Date(exp * 1000), tx);
    for (const row of rows) {
      record({
        type: "link.issued",
        campaignId: campaign.id,
        linkId: row.id,
        decision: "allow",
        data: {
          volunteerRef: row.volunteerRef,
          contestId: contest.id,
          phase: phase.name,
          scopes,
          notBefore: iso(nbf),
          expiresAt: iso(exp),
          maxUses: req.maxUses,
          kid: signer.kid,
          ...(batchId ? { batchId } : {}),
        },
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
          contestId: contest.id,
          phase: phase.name,
          scopes,
          expiresAt: iso(exp),
        },
      });
    }
  });
  deps.metrics?.issued(rows.length);

  const base = deps.config.publicGatewayUrl;
  return rows.map((row, i) => {
    const token = tokens[i]!;
    return {
      id: row.id,
      url: `${base}/l/${codes[i]!}`,
      token,
      notBefore: iso(nbf),
      expiresAt: iso(exp),
      volunteer: { ref: row.volunteerRef, name: row.volunteerName ?? null },
    };
  });
}

const CSV_COLUMNS = [
  { header: "ref", value: (l: IssuedLink) => l.volunteer.ref },
  { header: "name", value: (l: IssuedLink) => l.volunteer.name },
  { header: "id", value: (l: IssuedLink) => l.id },
  { header: "url", value: (l: IssuedLink) => l.url },
  { header: "notBefore", value: (l: IssuedLink) => l.notBefore },
  { header: "expiresAt", value: (l: IssuedLink) => l.expiresAt },
] as const;

/** A batch as the CSV file a coordinator downloads (`ref,name,id,url,notBefore,expiresAt`). */
export const issuedLinksCsv = (links: readonly IssuedLink[]): string => toCsv(CSV_COLUMNS, links);
