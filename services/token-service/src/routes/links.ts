import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { Link, LinkWithActivity } from "@phaselock/db";
import type { Context } from "hono";
import type { AppEnv, Principal } from "../context.ts";
import { publishChange } from "../effects.ts";
import { fail, failUnknownFilter, zodIssues } from "../errors.ts";
import {
  ANSWER_COLUMNS,
  type BatchVolunteer,
  batchAnswerCsv,
  DEFAULT_MAX_USES,
  DEFAULT_TTL_SECONDS,
  type IssueRequest,
  issueBatch,
  issueLinks,
  MAX_BATCH,
  MAX_MAX_USES,
  MAX_TTL_SECONDS,
} from "../issuance.ts";
import { auth, canActOnCampaign } from "../middleware/auth.ts";
import { queryPointer } from "../middleware/strict-query.ts";
import {
  bearer,
  Cursor,
  DisplayText,
  IsoDateTime,
  jsonBody,
  jsonContent,
  Limit,
  ProblemSchema,
  problems,
  ScopeSchema,
  Slug,
  VolunteerRef,
  VolunteerRefLookup,
} from "../schemas.ts";
import { decodeSheet, NOT_UTF8, readVolunteerSheet } from "../volunteer-sheet.ts";

const Volunteer = z
  .strictObject({ ref: VolunteerRef, name: DisplayText(100).optional() })
  .openapi("Volunteer", { description: "who the link is for; `ref` is the campaign's own reference" });

const issueFields = {
  campaignId: Slug,
  phase: Slug,
  scopes: z.array(ScopeSchema).min(1).max(4),
  ttlSeconds: z
    .number()
    .int()
    .min(1)
    .max(MAX_TTL_SECONDS)
    .default(DEFAULT_TTL_SECONDS)
    .openapi({ description: "1 s to 90 days; always clamped to the end of the phase" }),
  maxUses: z
    .number()
    .int()
    .min(1)
    .max(MAX_MAX_USES)
    .default(DEFAULT_MAX_USES)
    .openapi({ description: "redemptions allowed" }),
};

const LinkInput = z.strictObject({ ...issueFields, volunteer: Volunteer }).openapi("LinkInput");

const BatchInput = z
  .strictObject({
    ...issueFields,
    volunteers: z.array(Volunteer).min(1).max(MAX_BATCH),
    reissue: z.boolean().default(false).openapi({
      description:
        "false: a volunteer holding an active link of the phase is skipped; true: that link is revoked and a new one issued",
    }),
  })
  .superRefine((body, ctx) => {
    const seen = new Set<string>();
    const duplicates = new Set<string>();
    for (const [i, v] of body.volunteers.entries()) {
      if (!seen.has(v.ref)) {
        seen.add(v.ref);
        continue;
      }
      duplicates.add(v.ref);
      // Name the first few; a list with thousands of repeats gets one summary issue below.
      if (duplicates.size <= 20) {
        ctx.addIssue({ code: "custom", path: ["volunteers", i, "ref"], message: `duplicate ref "${v.ref}"` });
      }
    }
    if (duplicates.size > 20) {
      ctx.addIssue({
        code: "custom",
        path: ["volunteers"],
        message: `${duplicates.size} refs appear more than once`,
      });
    }
  })
  .openapi("LinkBatchInput");

const IssuedLink = z
  .object({
    id: z.string().openapi({ example: "lnk_3fj0d9Qk1lJ2m3n4o5p6qA" }),
    url: z.string().openapi({
      description:
        "The short link `PUBLIC_GATEWAY_URL/l/<code>` (a 22-character code, only its hash stored): hand this to the volunteer",
    }),
    token: z.string(),
    notBefore: IsoDateTime,
    expiresAt: IsoDateTime,
  })
  .openapi("IssuedLink");

const BatchIssuedLink = IssuedLink.extend({
  volunteer: z.object({ ref: z.string(), name: z.string().nullable() }),
  replaces: z
    .array(z.string())
    .optional()
    .openapi({ description: "`reissue`: the volunteer's links this one replaced (now revoked)" }),
  row: z.number().int().optional().openapi({ description: "CSV uploads: the volunteer's row in the file" }),
  index: z.number().int().optional().openapi({ description: "JSON batches: the volunteer's position" }),
}).openapi("BatchIssuedLink");

const SkippedVolunteer = z
  .object({
    ref: z.string(),
    name: z.string().nullable(),
    linkIds: z
      .array(z.string())
      .openapi({ description: "the active links of the phase the volunteer holds" }),
    row: z.number().int().optional(),
    index: z.number().int().optional(),
  })
  .openapi("SkippedVolunteer");

const BatchAnswer = z
  .object({
    links: z.array(BatchIssuedLink),
    skipped: z
      .array(SkippedVolunteer)
      .openapi({ description: "volunteers left out: they hold an active link of the phase (no `reissue`)" }),
  })
  .openapi("LinkBatch");

const TRUE_FALSE = z.enum(["true", "false"]).transform((v) => v === "true");

/** The issuing parameters of a CSV upload, which has no JSON body to carry them. */
const CsvUploadQuery = z.object({
  campaignId: Slug.optional().openapi({ description: "CSV uploads only (required there)" }),
  phase: Slug.optional().openapi({ description: "CSV uploads only (required there)" }),
  scopes: z.string().max(200).optional().openapi({
    description: "CSV uploads only (required there): comma-separated",
    example: "calls:read,calls:write",
  }),
  ttlSeconds: z.coerce
    .number()
    .int()
    .min(1)
    .max(MAX_TTL_SECONDS)
    .optional()
    .openapi({ type: "integer", description: "CSV uploads only; default 7 days", example: 172_800 }),
  maxUses: z.coerce
    .number()
    .int()
    .min(1)
    .max(MAX_MAX_USES)
    .optional()
    .openapi({ type: "integer", description: "CSV uploads only; default 5", example: 5 }),
  reissue: TRUE_FALSE.optional().openapi({
    type: "string",
    enum: ["true", "false"],
    description:
      "CSV uploads only: `true` revokes held links and issues new ones; default `false` skips them",
    example: "false",
  }),
});

/** What a CSV upload's query must hold, checked once the body is known to be CSV. */
const CsvIssue = z.object({
  campaignId: Slug,
  phase: Slug,
  scopes: z
    .string()
    .transform((s) => s.split(","))
    .pipe(z.array(ScopeSchema).min(1).max(4)),
  ttlSeconds: z.number().default(DEFAULT_TTL_SECONDS),
  maxUses: z.number().default(DEFAULT_MAX_USES),
  reissue: z.boolean().default(false),
});

const isCsv = (contentType: string): boolean => /^text\/csv\s*(;|$)/i.test(contentType);

/** Reads a CSV upload: its query's issuing parameters and its volunteers, or a 400 naming rows. */
async function readCsvUpload(c: Context<AppEnv>, query: z.infer<typeof CsvUploadQuery>, contentType: string) {
  const charset = /;\s*charset="?([^";]+)"?/i.exec(contentType)?.[1]?.toLowerCase();
  if (charset !== undefined && charset !== "utf-8" && charset !== "utf8") {
    fail("unsupported_media_type", "CSV uploads are read as UTF-8; save the sheet as CSV UTF-8.");
  }
  const params = CsvIssue.safeParse(query);
  if (!params.success) {
    fail("validation", "A CSV upload names its campaign, phase and scopes in the query; see `errors`.", {
      issues: zodIssues("query", params.error),
    });
  }
  const text = decodeSheet(await c.req.arrayBuffer());
  if (text === undefined) fail("validation", NOT_UTF8);
  const sheet = readVolunteerSheet(text, { reserved: ANSWER_COLUMNS, maxVolunteers: MAX_BATCH });
  if (!sheet.ok) {
    fail("validation", `The sheet has ${sheet.errors.length} error(s); see \`errors\` for their rows.`, {
      issues: sheet.errors.map((e) => ({ in: "body" as const, pointer: "#", row: e.row, detail: e.detail })),
    });
  }
  if (sheet.volunteers.length === 0) {
    fail("validation", "The sheet holds no volunteers.", {
      issues: [{ in: "body", pointer: "#", row: 2, detail: "no volunteer rows after the header" }],
    });
  }
  if (sheet.volunteers.length > MAX_BATCH) {
    const first = sheet.volunteers[MAX_BATCH]!;
    fail("validation", `A sheet holds at most ${MAX_BATCH} volunteers.`, {
      issues: [{ in: "body", pointer: "#", row: first.row, detail: `volunteer ${MAX_BATCH + 1}: too many` }],
    });
  }
  const { reissue, ...issue } = params.data;
  const volunteers: BatchVolunteer[] = sheet.volunteers.map((v) => ({
    ref: v.ref,
    name: v.name,
    row: v.row,
    extra: v.extra,
  }));
  return { request: { ...issue, volunteers }, reissue, extraColumns: sheet.extraColumns };
}

const LinkStatusSchema = z
  .enum(["active", "revoked", "expired", "exhausted", "suspended"])
  .openapi("LinkStatus", {
    description:
      "`revoked`: a revocation covers it, or its signing key (`kid`) was revoked (`POST /v1/keys/{kid}/revoke`: gateways refuse it `token_invalid`); `expired`: past `expiresAt` or its phase has ended; `suspended`: stopped automatically; `exhausted`: every use spent; else `active` (an issued-ahead link is active before its phase starts).",
  });

const LinkOutput = z
  .object({
    id: z.string(),
    campaignId: z.string(),
    contestId: z.string(),
    phase: z.string(),
    volunteer: z.object({ ref: z.string(), name: z.string().nullable() }),
    scopes: z.array(ScopeSchema),
    status: LinkStatusSchema,
    uses: z.number().int(),
    maxUses: z.number().int(),
    notBefore: IsoDateTime,
    expiresAt: IsoDateTime,
    issuedAt: IsoDateTime,
    issuedBy: z.string(),
    kid: z.string(),
    lastSeenAt: IsoDateTime.nullable(),
    suspendedAt: IsoDateTime.nullable(),
    suspendedReason: z.string().nullable(),
    devices: z.number().int().openapi({ description: "distinct devices that opened a session of it" }),
    activeSessions: z
      .number()
      .int()
      .openapi({ description: "sessions neither ended nor expired (0 unless the link is active)" }),
  })
  .openapi("Link");

const LinkList = z
  .object({ items: z.array(LinkOutput), nextCursor: z.string().nullable() })
  .openapi("LinkList");

const LinkId = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,100}$/, "not a link id")
  .openapi({ param: { name: "id", in: "path" }, example: "lnk_3fj0d9Qk1lJ2m3n4o5p6qA" });

const ListQuery = z.object({
  campaignId: Slug.optional().openapi({ description: "required in effect for coordinators: their own" }),
  volunteer: VolunteerRefLookup.optional(),
  q: VolunteerRefLookup.optional().openapi({
    description: "a search: links whose volunteer ref or name contains this text, in any case",
  }),
  status: z.enum(["active", "revoked", "expired"]).optional(),
  limit: Limit,
  cursor: Cursor.optional(),
});

type LinkStatus = z.infer<typeof LinkStatusSchema>;

const isoOrNull = (d: Date | null): string | null => (d ? d.toISOString() : null);

const linkJson = (link: LinkWithActivity, status: LinkStatus) => ({
  id: link.id,
  campaignId: link.campaignId,
  contestId: link.contestId,
  phase: link.phase,
  volunteer: { ref: link.volunteerRef, name: link.volunteerName },
  scopes: link.scopes,
  status,
  uses: link.uses,
  maxUses: link.maxUses,
  notBefore: link.notBefore.toISOString(),
  expiresAt: link.expiresAt.toISOString(),
  issuedAt: link.issuedAt.toISOString(),
  issuedBy: link.issuedBy,
  kid: link.kid,
  lastSeenAt: isoOrNull(link.lastSeenAt),
  suspendedAt: isoOrNull(link.suspendedAt),
  suspendedReason: link.suspendedReason,
  devices: link.devices,
  activeSessions: link.activeSessions,
});

/** Picks CSV when the caller asks for it over JSON. */
function wantsCsv(accept: string | undefined): boolean {
  if (!accept) return false;
  const q = (type: string): number => {
    for (const part of accept.split(",")) {
      const [media, ...params] = part.trim().split(";");
      if (media?.trim().toLowerCase() !== type) continue;
      const qp = params.map((p) => p.trim()).find((p) => p.startsWith("q="));
      const v = qp ? Number(qp.slice(2)) : 1;
      return Number.isFinite(v) ? v : 0;
    }
    return -1;
  };
  const csv = q("text/csv");
  return csv > 0 && csv >= q("application/json");
}

const issuanceProblems = problems(
  [400, "`validation`"],
  401,
  [403, "`forbidden` (another campaign's coordinator, or the auditor role) or `not_entitled`"],
  [404, "`not_found`: unknown campaign, or no such phase in its contest"],
  [409, "`phase_closed`: the phase has ended"],
  413,
  415,
  [422, "`scope_not_issuable`: members:export"],
);

const coordinatorOrAdmin = auth({ roles: ["admin", "coordinator"] });

/** Whether `p` may see a link: admins all, coordinators their campaign's only. */
const canSee = (p: Principal, link: Link): boolean => canActOnCampaign(p, link.campaignId);

export function registerLinks(app: OpenAPIHono<AppEnv>): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/links",
      tags: ["links"],
      summary: "Issue one link",
      description:
        "Checks, in order: validation (400), unknown campaign or phase (404), another campaign's coordinator (403 `forbidden`), members:export (422), phase ended (409 `phase_closed`), phase without member data or scope not entitled (403 `not_entitled`). A link for a later phase is issued ahead: `notBefore` is the phase start. `expiresAt` never passes the phase end.",
      security: bearer,
      middleware: [coordinatorOrAdmin] as const,
      request: { body: jsonBody(LinkInput) },
      responses: { 201: jsonContent(IssuedLink, "Issued; the token is shown only now"), ...issuanceProblems },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const [link] = await issueLinks(c.var.deps, c.var, { ...body, volunteers: [body.volunteer] });
      const { id, url, token, notBefore, expiresAt } = link!;
      return c.json({ id, url, token, notBefore, expiresAt }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/links/batch",
      tags: ["links"],
      summary: "Issue links for many volunteers, all or nothing",
      description: `Up to 10,000 volunteers with distinct refs, one transaction. Same checks as a single link.

**Two ways to send them:**

- \`Content-Type: application/json\`: the body as below (no query parameters).
- \`Content-Type: text/csv\` (UTF-8): a spreadsheet with a header row naming \`ref\` and optionally \`name\`; the issuing parameters go in the query (\`campaignId\`, \`phase\`, \`scopes=a,b\`, \`ttlSeconds\`, \`maxUses\`, \`reissue\`). Any other column (e-mail, phone …) is passed through to the CSV answer and never stored. Errors name the file's rows in \`errors[].row\` (the header being row 1).

**Re-uploads never double links:** a volunteer who already holds an active link of the phase in this campaign is skipped and reported (\`skipped\`; in CSV, \`status\` = \`skipped\`, \`id\` = the links held), unless \`reissue\` is true: then the held links are revoked (a \`link\` revocation each, audited) and new ones issued in the same transaction (\`replaces\`; \`status\` = \`reissued\`).

**Answer:** JSON, or with \`Accept: text/csv\` a CSV file: \`ref,name\`, the passed-through columns, then \`id,url,notBefore,expiresAt,status\`. Cells that a spreadsheet would run as formulas are prefixed with \`'\`.`,
      security: bearer,
      middleware: [coordinatorOrAdmin] as const,
      request: {
        query: CsvUploadQuery,
        body: {
          required: false,
          description: "JSON, or a CSV file with `Content-Type: text/csv`",
          content: {
            "application/json": { schema: BatchInput },
            "text/csv": {
              schema: z
                .string()
                .openapi({ example: "ref,name,email\r\nada@example.org,Ada,ada@example.org\r\n" }),
            },
          },
        },
      },
      responses: {
        201: {
          description: "Issued; the tokens are shown only now",
          content: {
            "application/json": { schema: BatchAnswer },
            "text/csv": { schema: z.string() },
          },
        },
        ...issuanceProblems,
        409: {
          description:
            "`phase_closed`: the phase has ended; `conflict`: another batch issued links to some of these volunteers meanwhile (send again)",
          content: { "application/problem+json": { schema: ProblemSchema } },
        },
      },
    }),
    async (c) => {
      const contentType = c.req.header("content-type") ?? "";
      const query = c.req.valid("query");
      let request: IssueRequest & { volunteers: BatchVolunteer[] };
      let reissue: boolean;
      let extraColumns: string[] = [];
      let source: "json" | "csv";
      if (isCsv(contentType)) {
        ({ request, reissue, extraColumns } = await readCsvUpload(c, query, contentType));
        source = "csv";
      } else if (/^application\/json\s*(;|$)/i.test(contentType)) {
        const given = [...new Set(new URL(c.req.url).searchParams.keys())];
        if (given.length > 0) {
          fail("validation", "Query parameters are read only with `Content-Type: text/csv`.", {
            issues: given.map((k) => ({
              in: "query" as const,
              pointer: queryPointer(k),
              detail: "send it in the JSON body",
            })),
          });
        }
        const body = c.req.valid("json") as z.infer<typeof BatchInput>;
        const { reissue: r, ...rest } = body;
        request = rest;
        reissue = r;
        source = "json";
      } else {
        fail("unsupported_media_type", "Send the volunteers as `application/json` or `text/csv`.");
      }
      const outcome = await issueBatch(c.var.deps, c.var, request, {
        held: reissue ? "reissue" : "skip",
        source,
      });
      const last = outcome.revoked.at(-1);
      if (outcome.policyVersion !== null && last) {
        await publishChange(c.var.deps, outcome.policyVersion, { type: "revocation", revocation: last });
      }
      if (wantsCsv(c.req.header("accept"))) {
        return c.body(batchAnswerCsv(request.volunteers, outcome, extraColumns), 201, {
          "Content-Type": "text/csv; charset=utf-8",
          "Content-Disposition": `attachment; filename="links-${request.campaignId}-${request.phase}.csv"`,
        });
      }
      const sent: readonly BatchVolunteer[] = request.volunteers;
      const rowOf = new Map(sent.map((v, i) => [v.ref, v.row ?? i]));
      const position = source === "csv" ? "row" : "index";
      const links = outcome.links.map((l) => ({ ...l, [position]: rowOf.get(l.volunteer.ref)! }));
      const skipped = outcome.skipped.map((s) => ({ ...s, [position]: rowOf.get(s.ref)! }));
      return c.json({ links, skipped }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/links",
      tags: ["links"],
      summary: "List links, newest first",
      description:
        "A coordinator sees its own campaign's links only (asking for another campaign is 403). `status=active` leaves out links that are exhausted or whose phase has ended, and (under `revoked`) those whose signing key was revoked, so a page may hold fewer than `limit` items while `nextCursor` is still set.",
      security: bearer,
      middleware: [coordinatorOrAdmin] as const,
      request: { query: ListQuery },
      responses: { 200: jsonContent(LinkList, "One page"), ...problems(400, 401, 403) },
    }),
    async (c) => {
      const { deps, principal } = c.var;
      const query = c.req.valid("query");
      let campaignId = query.campaignId;
      if (principal.role === "coordinator") {
        if (campaignId !== undefined && campaignId !== principal.campaignId) {
          fail("forbidden", "This API key may only list its own campaign's links.");
        }
        campaignId = principal.campaignId;
      } else if (campaignId !== undefined && !(await deps.repos.campaigns.get(campaignId))) {
        failUnknownFilter("campaignId", "campaign");
      }
      const now = deps.clock.now();
      const page = await deps.repos.links.list({
        campaignId,
        volunteer: query.volunteer,
        search: query.q,
        status: query.status,
        limit: query.limit,
        cursor: query.cursor ?? null,
        now,
      });
      // The status (revoked, expired — also by a phase ended early —, suspended, exhausted) is
      // computed in SQL, so filters and pages agree with what each item shows.
      const items = page.items.map((l) => linkJson(l, l.status));
      return c.json({ items, nextCursor: page.nextCursor }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/links/{id}",
      tags: ["links"],
      summary: "One link: status, uses, last seen",
      description:
        "A coordinator asking for another campaign's link gets 404, as for a link that does not exist, so ids of other campaigns cannot be probed.",
      security: bearer,
      middleware: [coordinatorOrAdmin] as const,
      request: { params: z.object({ id: LinkId }) },
      responses: { 200: jsonContent(LinkOutput, "The link"), ...problems(400, 401, 403, 404) },
    }),
    async (c) => {
      const { deps, principal } = c.var;
      const { id } = c.req.valid("param");
      const now = deps.clock.now();
      const link = await deps.repos.links.getWithStatus(id, now);
      if (!link || !canSee(principal, link)) fail("not_found", "No such link.");
      return c.json(linkJson(link, link.status), 200);
    },
  );
}
