import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Campaign } from "@phaselock/policy";
import type { AppEnv, Principal, TokenServiceDeps } from "../context.ts";
import { audited, publishChange } from "../effects.ts";
import { fail, failUnknownFilter } from "../errors.ts";
import { auth, canActOnCampaign } from "../middleware/auth.ts";
import {
  bearer,
  Cursor,
  DisplayText,
  jsonBody,
  jsonContent,
  Limit,
  problems,
  ScopeSchema,
  Slug,
} from "../schemas.ts";

const RateLimit = z.number().int().min(1).max(1_000_000);

/** Display text for volunteers' pages: visible characters (no line breaks), trimmed, 1 to 200. */
const Contact = DisplayText(200);

const CampaignInput = z
  .strictObject({
    name: DisplayText(200),
    contestId: Slug,
    limits: z
      .strictObject({ requestsPerMinute: RateLimit.optional(), recordsPerHour: RateLimit.optional() })
      .optional()
      .openapi({ description: "per-link limits; an omitted one uses the service default" }),
    contact: Contact.nullable().optional().openapi({
      description:
        'Whom volunteers should ask when their link is refused: a name and an e-mail address or phone number, shown as plain text on the gateway\'s refusal pages and the calling page. Omitted or null: none (the pages say "the coordinator who sent you the link"). PUT replaces the campaign, so an omitted contact clears it.',
      example: "Jo Bloggs, jo@example.org or 07700 900456",
    }),
  })
  .openapi("CampaignInput");

const CampaignOutput = z
  .object({
    id: z.string(),
    name: z.string(),
    contestId: z.string(),
    limits: z.object({
      requestsPerMinute: z.number().int().optional(),
      recordsPerHour: z.number().int().optional(),
    }),
    contact: z.string().optional().openapi({ description: "whom volunteers should ask; absent when none" }),
  })
  .openapi("Campaign");

const CampaignParams = z.object({
  campaignId: Slug.openapi({ param: { name: "campaignId", in: "path" }, example: "starmer-2020" }),
});

const EntitlementParams = CampaignParams.extend({
  phase: Slug.openapi({ param: { name: "phase", in: "path" }, example: "ballot" }),
});

const EntitlementInput = z
  .strictObject({ scopes: z.array(ScopeSchema).min(1).max(10) })
  .openapi("EntitlementInput");

const EntitlementOutput = z
  .object({ campaignId: z.string(), phase: z.string(), scopes: z.array(ScopeSchema) })
  .openapi("Entitlement");

// Every field of the stored campaign, so a field added to it is answered without a change here.
const campaignJson = (c: Campaign) => ({
  ...c,
  id: c.id,
  name: c.name,
  contestId: c.contestId,
  limits: { ...c.limits },
  ...(c.contact !== undefined ? { contact: c.contact } : {}),
});

const CampaignList = z
  .object({ items: z.array(CampaignOutput), nextCursor: z.string().nullable() })
  .openapi("CampaignList");

const CampaignListQuery = z.object({
  contestId: Slug.optional().openapi({ description: "only the campaigns of this contest" }),
  limit: Limit,
  cursor: Cursor.optional(),
});

const LinkCounts = z
  .object({
    active: z.number().int(),
    revoked: z.number().int(),
    expired: z.number().int(),
    suspended: z.number().int(),
    exhausted: z.number().int(),
  })
  .openapi("LinkCounts", { description: "the campaign's links by status (see `LinkStatus`)" });

const CampaignDetail = CampaignOutput.extend({
  entitlements: z
    .record(z.string(), z.array(ScopeSchema))
    .openapi({ description: "phase -> scopes granted", example: { ballot: ["calls:read", "calls:write"] } }),
  links: LinkCounts,
}).openapi("CampaignDetail");

const ProgressQuery = z.object({
  phase: Slug.optional().openapi({ description: "only the links of this phase", example: "ballot" }),
  limit: Limit,
  cursor: Cursor.optional(),
});

const ProgressCounts = {
  links: z.number().int().openapi({ description: "links issued to the volunteer" }),
  activeLinks: z.number().int(),
  opened: z.number().int().openapi({ description: "links redeemed at least once" }),
  activeSessions: z.number().int().openapi({ description: "live sessions of active links" }),
  callsMade: z
    .number()
    .int()
    .openapi({ description: "call outcomes recorded (allowed `calls:write` requests)" }),
};

const VolunteerProgress = z
  .object({ ref: z.string(), name: z.string().nullable(), ...ProgressCounts })
  .openapi("VolunteerProgress");

const Progress = z
  .object({
    campaignId: z.string(),
    phase: z.string().nullable(),
    totals: z.object({ volunteers: z.number().int(), ...ProgressCounts }),
    items: z.array(VolunteerProgress),
    nextCursor: z.string().nullable(),
  })
  .openapi("CampaignProgress");

const progressCursor = (ref: string): string =>
  Buffer.from(JSON.stringify(["ref", ref])).toString("base64url");
function afterRef(cursor: string): string {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    if (Array.isArray(parsed) && parsed[0] === "ref" && typeof parsed[1] === "string") return parsed[1];
  } catch {
    // refused below
  }
  fail("validation", "Invalid cursor.", {
    issues: [{ in: "query", pointer: "#/cursor", detail: "not a cursor this service handed out" }],
  });
}

/** A coordinator reads its own campaign only: another's is 403 `forbidden`, as for its links. */
async function readableCampaign(deps: TokenServiceDeps, principal: Principal, campaignId: string) {
  if (principal.role === "coordinator" && !canActOnCampaign(principal, campaignId))
    fail("forbidden", "This API key may only read its own campaign.");
  const campaign = await deps.repos.campaigns.get(campaignId);
  if (!campaign) fail("not_found", "No such campaign.");
  return campaign;
}

/** The campaign and the phase of its contest, or 404 `not_found` for either. */
async function campaignPhase(deps: TokenServiceDeps, campaignId: string, phase: string) {
  const campaign = await deps.repos.campaigns.get(campaignId);
  if (!campaign) fail("not_found", "No such campaign.");
  const contest = await deps.repos.contests.get(campaign.contestId);
  if (!contest?.phases.some((p) => p.name === phase)) {
    fail("not_found", `No phase of that name in contest "${campaign.contestId}".`);
  }
  return campaign;
}

export function registerCampaigns(app: OpenAPIHono<AppEnv>): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/campaigns",
      tags: ["campaigns"],
      summary: "List campaigns",
      description: "By id. A coordinator's list holds its own campaign only.",
      security: bearer,
      middleware: [auth({ roles: ["admin", "auditor", "coordinator"] })] as const,
      request: { query: CampaignListQuery },
      responses: { 200: jsonContent(CampaignList, "One page"), ...problems(400, 401) },
    }),
    async (c) => {
      const { deps, principal } = c.var;
      const query = c.req.valid("query");
      if (query.contestId !== undefined && !(await deps.repos.contests.get(query.contestId))) {
        failUnknownFilter("contestId", "contest");
      }
      const page = await deps.repos.campaigns.listPage({
        contestId: query.contestId,
        only: principal.role === "coordinator" ? principal.campaignId : undefined,
        limit: query.limit,
        cursor: query.cursor ?? null,
      });
      return c.json({ items: page.items.map(campaignJson), nextCursor: page.nextCursor }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/campaigns/{campaignId}",
      tags: ["campaigns"],
      summary: "One campaign with its entitlements and link counts",
      description:
        "`entitlements` maps each phase the campaign is granted to its scopes; `links` counts the campaign's links by status. A coordinator may read its own campaign only (another: 403 `forbidden`).",
      security: bearer,
      middleware: [auth({ roles: ["admin", "auditor", "coordinator"] })] as const,
      request: { params: CampaignParams },
      responses: { 200: jsonContent(CampaignDetail, "The campaign"), ...problems(400, 401, 403, 404) },
    }),
    async (c) => {
      const { deps, principal } = c.var;
      const { campaignId } = c.req.valid("param");
      const campaign = await readableCampaign(deps, principal, campaignId);
      const [entitlements, links] = await Promise.all([
        deps.repos.entitlements.forCampaign(campaignId),
        deps.repos.links.countByStatus(campaignId, deps.clock.now()),
      ]);
      return c.json({ ...campaignJson(campaign), entitlements, links }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/campaigns/{campaignId}/progress",
      tags: ["campaigns"],
      summary: "Progress by volunteer: links opened, active sessions, calls made",
      description:
        "One item per volunteer holding links of the campaign (of `phase`, when given), by ref, with `totals` over all of them. `callsMade` counts the gateway's allowed `calls:write` requests (call outcomes recorded). Admins, and the campaign's own coordinator (another campaign: 403 `forbidden`).",
      security: bearer,
      middleware: [auth({ roles: ["admin", "coordinator"] })] as const,
      request: { params: CampaignParams, query: ProgressQuery },
      responses: { 200: jsonContent(Progress, "The progress"), ...problems(400, 401, 403, 404) },
    }),
    async (c) => {
      const { deps, principal } = c.var;
      const { campaignId } = c.req.valid("param");
      const query = c.req.valid("query");
      const after = query.cursor === undefined ? null : afterRef(query.cursor);
      const campaign = await readableCampaign(deps, principal, campaignId);
      if (query.phase !== undefined) {
        const contest = await deps.repos.contests.get(campaign.contestId);
        if (!contest?.phases.some((p) => p.name === query.phase)) {
          fail("validation", "No phase of that name in the campaign's contest.", {
            issues: [
              { in: "query", pointer: "#/phase", detail: `not a phase of contest "${campaign.contestId}"` },
            ],
          });
        }
      }
      const all = await deps.repos.links.progress(campaignId, query.phase, deps.clock.now());
      const totals = {
        volunteers: all.length,
        links: 0,
        activeLinks: 0,
        opened: 0,
        activeSessions: 0,
        callsMade: 0,
      };
      for (const v of all) {
        totals.links += v.links;
        totals.activeLinks += v.activeLinks;
        totals.opened += v.opened;
        totals.activeSessions += v.activeSessions;
        totals.callsMade += v.callsMade;
      }
      // Refs sort in SQL's collation; the page starts after the cursor's ref in that order.
      const start = after === null ? 0 : all.findIndex((v) => v.ref === after) + 1;
      if (after !== null && start === 0) {
        fail("validation", "Invalid cursor.", {
          issues: [{ in: "query", pointer: "#/cursor", detail: "the cursor's volunteer is gone" }],
        });
      }
      const items = all.slice(start, start + query.limit);
      const last = items.at(-1);
      const nextCursor = start + query.limit < all.length && last ? progressCursor(last.ref) : null;
      return c.json({ campaignId, phase: query.phase ?? null, totals, items, nextCursor }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "put",
      path: "/v1/campaigns/{campaignId}",
      tags: ["campaigns"],
      summary: "Create or update a campaign",
      description:
        "A campaign stays in the contest it was created in: its links and entitlements name that contest's phases, so moving it is refused with 409 `conflict`.",
      security: bearer,
      middleware: [auth({ roles: ["admin"] })] as const,
      request: { params: CampaignParams, body: jsonBody(CampaignInput) },
      responses: {
        200: jsonContent(CampaignOutput, "The campaign as stored"),
        ...problems(
          400,
          401,
          403,
          [404, "`not_found`: unknown contest"],
          [409, "`conflict`: moving to another contest"],
          413,
          415,
        ),
      },
    }),
    async (c) => {
      const { deps } = c.var;
      const { campaignId } = c.req.valid("param");
      const body = c.req.valid("json");
      const existing = await deps.repos.campaigns.get(campaignId);
      if (existing && existing.contestId !== body.contestId) {
        fail(
          "conflict",
          `The campaign belongs to contest "${existing.contestId}"; create a new campaign instead.`,
        );
      }
      const limits: Campaign["limits"] = {};
      if (body.limits?.requestsPerMinute !== undefined)
        limits.requestsPerMinute = body.limits.requestsPerMinute;
      if (body.limits?.recordsPerHour !== undefined) limits.recordsPerHour = body.limits.recordsPerHour;
      const { version, campaign } = await audited(c, async ({ repos, record }) => {
        const upserted = await repos.campaigns.upsert({
          id: campaignId,
          name: body.name,
          contestId: body.contestId,
          limits,
          contact: body.contact ?? undefined,
        });
        record({
          type: "campaign.upserted",
          campaignId,
          data: { ...campaignJson(upserted.campaign), version: upserted.version },
        });
        return upserted;
      });
      await publishChange(deps, version, { type: "campaign", campaign });
      return c.json(campaignJson(campaign), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "put",
      path: "/v1/campaigns/{campaignId}/entitlements/{phase}",
      tags: ["campaigns"],
      summary: "Grant scopes to a campaign for one phase",
      description: "Replaces any earlier grant for that phase.",
      security: bearer,
      middleware: [auth({ roles: ["admin"] })] as const,
      request: { params: EntitlementParams, body: jsonBody(EntitlementInput) },
      responses: {
        200: jsonContent(EntitlementOutput, "The entitlement as stored"),
        ...problems(
          400,
          401,
          403,
          [404, "`not_found`: unknown campaign, or no such phase in its contest"],
          413,
          415,
        ),
      },
    }),
    async (c) => {
      const { deps } = c.var;
      const { campaignId, phase } = c.req.valid("param");
      const { scopes } = c.req.valid("json");
      await campaignPhase(deps, campaignId, phase);
      const stored = await audited(c, async ({ repos, record }) => {
        const put = await repos.entitlements.put(campaignId, phase, scopes);
        record({
          type: "entitlement.granted",
          campaignId,
          data: { phase, scopes: put.scopes, version: put.version },
        });
        return put;
      });
      await publishChange(deps, stored.version, {
        type: "entitlement",
        campaignId,
        phase,
        scopes: stored.scopes,
      });
      return c.json({ campaignId, phase, scopes: stored.scopes }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/campaigns/{campaignId}/entitlements/{phase}",
      tags: ["campaigns"],
      summary: "Withdraw a campaign's scopes for one phase",
      description:
        "Links of that phase stop reaching member data at once. Idempotent. A grant of a phase the timeline no longer has can be withdrawn too.",
      security: bearer,
      middleware: [auth({ roles: ["admin"] })] as const,
      request: { params: EntitlementParams },
      responses: {
        204: { description: "Withdrawn (or there was nothing to withdraw)" },
        ...problems(400, 401, 403, [
          404,
          "`not_found`: unknown campaign, or no such phase in its contest (nor a grant for it)",
        ]),
      },
    }),
    async (c) => {
      const { deps } = c.var;
      const { campaignId, phase } = c.req.valid("param");
      // A grant outlives a timeline that drops its phase (GET lists it, and it would apply again
      // were the phase put back): what the campaign holds can always be withdrawn.
      if (!(await deps.repos.entitlements.get(campaignId, phase)))
        await campaignPhase(deps, campaignId, phase);
      const { version, removed } = await audited(c, async ({ repos, record }) => {
        const r = await repos.entitlements.remove(campaignId, phase);
        record({
          type: "entitlement.withdrawn",
          campaignId,
          data: { phase, removed: r.removed, version: r.version },
        });
        return r;
      });
      if (removed)
        await publishChange(deps, version, { type: "entitlement", campaignId, phase, scopes: null });
      return c.body(null, 204);
    },
  );
}
