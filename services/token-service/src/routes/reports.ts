import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { queryRows } from "@phaselock/db";
import { sql } from "drizzle-orm";
import type { AppEnv } from "../context.ts";
import { failUnknownFilter } from "../errors.ts";
import { auth } from "../middleware/auth.ts";
import { bearer, IsoDateTime, jsonContent, problems, Since, Slug } from "../schemas.ts";

/** Refusals that mean someone is still using a link that should no longer be in circulation. */
export const DEAD_LINK_REASONS = ["phase_closed", "revoked", "expired", "suspended"] as const;

const DeadLinkRow = z
  .object({
    campaignId: z.string().nullable(),
    issuedBy: z
      .string()
      .nullable()
      .openapi({ description: "API key id of the issuing coordinator, or `admin`" }),
    reason: z.enum(DEAD_LINK_REASONS),
    attempts: z.number().int(),
    links: z.number().int().openapi({ description: "distinct links behind the attempts" }),
    lastAt: IsoDateTime,
  })
  .openapi("DeadLinkAttempts");

const DAY_MS = 86_400_000;

export function registerReports(app: OpenAPIHono<AppEnv>): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/reports/dead-links",
      tags: ["audit"],
      summary: "Attempts to use dead links, per campaign and issuing coordinator",
      description:
        "Counts gateway refusals with `phase_closed`, `revoked`, `expired` or `suspended` since `since` " +
        "(default: 7 days ago), grouped by campaign, issuing API key and reason, most attempts first. " +
        "A rising count for one coordinator is the signal that their links are circulating where they should not.",
      security: bearer,
      middleware: [auth({ roles: ["admin"] })] as const,
      request: { query: z.object({ since: Since.optional(), campaignId: Slug.optional() }) },
      responses: {
        200: jsonContent(
          z.object({ since: IsoDateTime, items: z.array(DeadLinkRow) }).openapi("DeadLinkReport"),
          "The report",
        ),
        ...problems(400, 401, 403),
      },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const deps = c.var.deps;
      // As every list's filter: a campaign that does not exist is refused, not answered with nothing.
      if (q.campaignId !== undefined && !(await deps.repos.campaigns.get(q.campaignId))) {
        failUnknownFilter("campaignId", "campaign");
      }
      const since = q.since ? new Date(q.since) : new Date(deps.clock.now().getTime() - 7 * DAY_MS);
      const reasons = sql.join(
        DEAD_LINK_REASONS.map((r) => sql`${r}`),
        sql`, `,
      );
      const rows = await queryRows<{
        campaign_id: string | null;
        issued_by: string | null;
        reason: (typeof DEAD_LINK_REASONS)[number];
        attempts: number;
        links: number;
        last_at: string;
      }>(
        deps.db,
        sql`select e.campaign_id, l.issued_by, e.reason, count(*)::int as attempts,
              count(distinct e.link_id)::int as links, max(e.at)::text as last_at
            from audit_events e left join links l on l.id = e.link_id
            where e.type = 'access' and e.decision = 'deny' and e.reason in (${reasons})
              and e.at >= ${since.toISOString()}::timestamptz
              ${q.campaignId ? sql`and e.campaign_id = ${q.campaignId}` : sql``}
            group by e.campaign_id, l.issued_by, e.reason
            order by attempts desc, e.campaign_id, l.issued_by, e.reason
            limit 500`,
      );
      return c.json(
        {
          since: since.toISOString(),
          items: rows.map((r) => ({
            campaignId: r.campaign_id,
            issuedBy: r.issued_by,
            reason: r.reason,
            attempts: r.attempts,
            links: r.links,
            lastAt: new Date(r.last_at).toISOString(),
          })),
        },
        200,
      );
    },
  );
}
