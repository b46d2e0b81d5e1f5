import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import {
  REVOCATION_SCOPES,
  type RevocationScope,
  type RevocationTarget,
  revocationSchema,
} from "@phaselock/policy";
import type { AppEnv } from "../context.ts";
import { audited, publishChange } from "../effects.ts";
import { fail } from "../errors.ts";
import { auth } from "../middleware/auth.ts";
import { revocationJson } from "../revocation-json.ts";
import {
  bearer,
  Cursor,
  DisplayText,
  IsoDateTime,
  jsonBody,
  jsonContent,
  Limit,
  problems,
  Slug,
  VolunteerRefLookup,
} from "../schemas.ts";

const RevocationInput = revocationSchema({
  fields: {
    linkId: z.string().regex(/^[A-Za-z0-9_-]{1,100}$/, "not a link id"),
    volunteerRef: VolunteerRefLookup,
    campaignId: Slug,
    contestId: Slug,
    phase: Slug,
  },
  extra: { reason: DisplayText(500) },
  form: "input",
}).openapi("RevocationInput", {
  description:
    "`link` needs linkId; `volunteer` volunteerRef (and campaignId to limit it to one campaign; always set for coordinators); `campaign` campaignId; `phase` contestId and phase; `contest` contestId; `all` nothing.",
});

type RevocationRequest = z.output<typeof RevocationInput>;

/**
 * Checks that what a request names exists and returns what the revocation will hold: for `link`,
 * the link's campaign and contest are kept for the record (only linkId matches).
 */
async function resolveTarget(
  deps: AppEnv["Variables"]["deps"],
  body: RevocationRequest,
): Promise<RevocationTarget> {
  switch (body.scope) {
    case "link": {
      const link = await deps.repos.links.get(body.linkId);
      if (!link) fail("not_found", "No such link.");
      if (body.campaignId && body.campaignId !== link.campaignId) {
        fail("validation", "campaignId does not match the link's campaign.", {
          issues: [{ in: "body", pointer: "#/campaignId", detail: "does not match the link's campaign" }],
        });
      }
      return { scope: "link", linkId: body.linkId, campaignId: link.campaignId, contestId: link.contestId };
    }
    case "phase":
    case "contest": {
      const contest = await deps.repos.contests.get(body.contestId);
      if (!contest) fail("not_found", "No such contest.");
      if (body.scope === "phase") {
        if (!contest.phases.some((p) => p.name === body.phase))
          fail("not_found", "No such phase in that contest.");
        return { scope: "phase", contestId: body.contestId, phase: body.phase };
      }
      return { scope: "contest", contestId: body.contestId };
    }
    case "campaign":
      if (!(await deps.repos.campaigns.get(body.campaignId))) fail("not_found", "No such campaign.");
      return { scope: "campaign", campaignId: body.campaignId };
    case "volunteer":
      if (body.campaignId && !(await deps.repos.campaigns.get(body.campaignId))) {
        fail("not_found", "No such campaign.");
      }
      return { scope: "volunteer", volunteerRef: body.volunteerRef, campaignId: body.campaignId ?? null };
    case "all":
      return { scope: "all" };
  }
}

const RevocationCreated = z
  .object({
    id: z.string(),
    effectiveAt: IsoDateTime,
    matched: z.number().int().openapi({ description: "links it covers now (0 for a typo'd ref)" }),
  })
  .openapi("RevocationCreated");

const RevocationOutput = z
  .object({
    id: z.string(),
    scope: z.enum(REVOCATION_SCOPES),
    linkId: z.string().nullable(),
    volunteerRef: z.string().nullable(),
    campaignId: z.string().nullable(),
    contestId: z.string().nullable(),
    phase: z.string().nullable(),
    reason: z.string(),
    actor: z.string(),
    effectiveAt: IsoDateTime,
    createdAt: IsoDateTime,
  })
  .openapi("Revocation");

const COORDINATOR_SCOPES: readonly RevocationScope[] = ["link", "volunteer", "campaign"];

export function registerRevocations(app: OpenAPIHono<AppEnv>): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/revocations",
      tags: ["revocations"],
      summary: "Revoke links",
      description:
        "Every scope but `link` revokes each matching link issued up to `effectiveAt` (compared at the token's `iat` second, so a link issued in the same second is covered); later links work. Coordinators may revoke their own campaign's links by `link`, `volunteer` or `campaign` only.",
      security: bearer,
      middleware: [auth({ roles: ["admin", "coordinator"] })] as const,
      request: { body: jsonBody(RevocationInput) },
      responses: {
        201: jsonContent(RevocationCreated, "Revoked"),
        ...problems(
          400,
          401,
          [403, "`forbidden`: a coordinator outside its campaign, or a scope it may not use"],
          [404, "`not_found`: unknown link, campaign, contest or phase"],
          413,
          415,
        ),
      },
    }),
    async (c) => {
      const { deps, principal } = c.var;
      const body = c.req.valid("json");
      if (principal.role === "coordinator" && !COORDINATOR_SCOPES.includes(body.scope)) {
        fail("forbidden", `A coordinator may not revoke by ${body.scope}.`);
      }
      let target = await resolveTarget(deps, body);
      if (principal.role === "coordinator") {
        // A coordinator's volunteer revocation is always limited to its own campaign.
        if (target.scope === "volunteer" && !target.campaignId) {
          target = { ...target, campaignId: principal.campaignId };
        }
        if ((target.campaignId ?? null) !== principal.campaignId) {
          fail("forbidden", "This API key may only revoke its own campaign's links.");
        }
      }

      const { version, revocation, matched } = await audited(c, async ({ repos, record }) => {
        const inserted = await repos.revocations.insert({
          ...target,
          reason: body.reason,
          actor: principal.actor,
          effectiveAt: deps.clock.now(),
        });
        record({
          type: "revocation.created",
          campaignId: inserted.revocation.campaignId ?? null,
          linkId: inserted.revocation.linkId ?? null,
          data: { revocation: revocationJson(inserted.revocation), version: inserted.version },
        });
        return { ...inserted, matched: await repos.links.countCoveredBy(inserted.revocation.id) };
      });
      await publishChange(deps, version, { type: "revocation", revocation });
      return c.json({ id: revocation.id, effectiveAt: revocation.effectiveAt.toISOString(), matched }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/revocations",
      tags: ["revocations"],
      summary: "List revocations, newest first",
      security: bearer,
      middleware: [auth({ roles: ["admin", "auditor"] })] as const,
      request: { query: z.object({ limit: Limit, cursor: Cursor.optional() }) },
      responses: {
        200: jsonContent(
          z
            .object({ items: z.array(RevocationOutput), nextCursor: z.string().nullable() })
            .openapi("RevocationList"),
          "One page",
        ),
        ...problems(400, 401, 403),
      },
    }),
    async (c) => {
      const { deps } = c.var;
      const { limit, cursor } = c.req.valid("query");
      const page = await deps.repos.revocations.list({ limit, cursor: cursor ?? null });
      return c.json({ items: page.items.map(revocationJson), nextCursor: page.nextCursor }, 200);
    },
  );
}
