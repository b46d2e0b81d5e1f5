import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { listEvents, type StoredEvent, verifyStored } from "@phaselock/audit";
import type { AppEnv } from "../context.ts";
import { auth } from "../middleware/auth.ts";
import { bearer, Cursor, IsoDateTime, jsonContent, Limit, problems, Slug } from "../schemas.ts";

const AuditEvent = z
  .object({
    seq: z.number().int(),
    id: z.string(),
    at: IsoDateTime,
    type: z.string().openapi({ example: "link.issued" }),
    actor: z.string().nullable(),
    campaignId: z.string().nullable(),
    linkId: z.string().nullable(),
    decision: z.enum(["allow", "deny"]).nullable(),
    reason: z.string().nullable(),
    data: z.record(z.string(), z.unknown()),
    prevHash: z.string(),
    hash: z.string(),
  })
  .openapi("AuditEvent");

const AuditQuery = z.object({
  campaignId: Slug.optional(),
  linkId: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,100}$/, "not a link id")
    .optional(),
  decision: z.enum(["allow", "deny"]).optional(),
  since: IsoDateTime.optional(),
  limit: Limit,
  cursor: Cursor.optional(),
});

const Verified = z
  .union([
    z.object({ ok: z.literal(true), events: z.number().int(), head: z.string() }),
    z.object({
      ok: z.literal(false),
      events: z.number().int(),
      brokenAt: z.object({
        seq: z.number().int(),
        id: z.string(),
        reason: z.enum(["hash_mismatch", "prev_mismatch", "seq_gap"]),
      }),
    }),
  ])
  .openapi("AuditVerification");

const eventJson = (e: StoredEvent) => ({ ...e, at: e.at.toISOString() });

const readers = auth({ roles: ["admin", "auditor"] });

export function registerAudit(app: OpenAPIHono<AppEnv>): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/audit",
      tags: ["audit"],
      summary: "Access and admin events, newest first",
      security: bearer,
      middleware: [readers] as const,
      request: { query: AuditQuery },
      responses: {
        200: jsonContent(
          z
            .object({ items: z.array(AuditEvent), nextCursor: z.string().nullable() })
            .openapi("AuditEventList"),
          "One page",
        ),
        ...problems(400, 401, 403),
      },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const page = await listEvents(c.var.deps.db, {
        campaignId: q.campaignId,
        linkId: q.linkId,
        decision: q.decision,
        since: q.since ? new Date(q.since) : undefined,
        limit: q.limit,
        cursor: q.cursor,
      });
      return c.json({ items: page.items.map(eventJson), nextCursor: page.nextCursor }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/audit/verify",
      tags: ["audit"],
      summary: "Check the whole hash chain",
      description:
        "`events` is the number of events checked; `head` the latest hash, or `brokenAt` the first event that does not chain.",
      security: bearer,
      middleware: [readers] as const,
      responses: { 200: jsonContent(Verified, "The verification result"), ...problems(401, 403) },
    }),
    async (c) => c.json(await verifyStored(c.var.deps.db), 200),
  );
}
