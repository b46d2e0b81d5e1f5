import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Campaign } from "@phaselock/policy";
import type { AppEnv, TokenServiceDeps } from "../context.ts";
import { audited, publishChange } from "../effects.ts";
import { fail } from "../errors.ts";
import { auth } from "../middleware/auth.ts";
import { bearer, DisplayText, jsonBody, jsonContent, problems, ScopeSchema, Slug } from "../schemas.ts";

const Limit = z.number().int().min(1).max(1_000_000);

/** Display text for volunteers' pages: visible characters (no line breaks), trimmed, 1 to 200. */
const Contact = DisplayText(200);

const CampaignInput = z
  .strictObject({
    name: DisplayText(200),
    contestId: Slug,
    limits: z
      .strictObject({ requestsPerMinute: Limit.optional(), recordsPerHour: Limit.optional() })
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

const campaignJson = (c: Campaign) => ({
  id: c.id,
  name: c.name,
  contestId: c.contestId,
  limits: { ...c.limits },
  ...(c.contact !== undefined ? { contact: c.contact } : {}),
});

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
      description: "Links of that phase stop reaching member data at once. Idempotent.",
      security: bearer,
      middleware: [auth({ roles: ["admin"] })] as const,
      request: { params: EntitlementParams },
      responses: {
        204: { description: "Withdrawn (or there was nothing to withdraw)" },
        ...problems(400, 401, 403, [404, "`not_found`: unknown campaign, or no such phase in its contest"]),
      },
    }),
    async (c) => {
      const { deps } = c.var;
      const { campaignId, phase } = c.req.valid("param");
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
