import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../context.ts";
import { audited, publishChange } from "../effects.ts";
import { fail } from "../errors.ts";
import { auth, ROLES } from "../middleware/auth.ts";
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
} from "../schemas.ts";

const ApiKeyInput = z
  .strictObject({
    role: z.enum(ROLES),
    campaignId: Slug.optional().openapi({
      description: "required for a coordinator, refused for other roles",
    }),
    label: DisplayText(200).optional(),
  })
  .superRefine((b, ctx) => {
    if (b.role === "coordinator" && b.campaignId === undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["campaignId"],
        message: "a coordinator key is bound to one campaign",
      });
    }
    if (b.role !== "coordinator" && b.campaignId !== undefined) {
      ctx.addIssue({
        code: "custom",
        path: ["campaignId"],
        message: `an ${b.role} key is not bound to a campaign`,
      });
    }
  })
  .openapi("ApiKeyInput");

const ApiKeyCreated = z
  .object({
    id: z.string().openapi({ example: "key_3fj0d9Qk1lJ2m3n4o5p6qA" }),
    key: z.string().openapi({ description: "the secret: shown once, stored only hashed" }),
    role: z.enum(ROLES),
    campaignId: z.string().nullable(),
    label: z.string().nullable(),
  })
  .openapi("ApiKeyCreated");

const ApiKeyOutput = z
  .object({
    id: z.string().openapi({ example: "key_3fj0d9Qk1lJ2m3n4o5p6qA" }),
    role: z.enum(ROLES),
    campaignId: z.string().nullable(),
    label: z.string().nullable(),
    createdAt: IsoDateTime,
    lastUsedAt: IsoDateTime.nullable().openapi({
      description: "when the key last authenticated a request, to the minute; null: never used",
    }),
  })
  .openapi("ApiKey", { description: "An API key as listed: never the key nor its hash" });

const ApiKeyList = z
  .object({ items: z.array(ApiKeyOutput), nextCursor: z.string().nullable() })
  .openapi("ApiKeyList");

const KeyId = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,100}$/, "not an API key id")
  .openapi({ param: { name: "id", in: "path" }, example: "key_3fj0d9Qk1lJ2m3n4o5p6qA" });

export function registerApiKeys(app: OpenAPIHono<AppEnv>): void {
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/api-keys",
      tags: ["api keys"],
      summary: "Create an API key",
      security: bearer,
      middleware: [auth({ roles: ["admin"] })] as const,
      request: { body: jsonBody(ApiKeyInput) },
      responses: {
        201: jsonContent(ApiKeyCreated, "Created; `key` is never shown again"),
        ...problems(400, 401, 403, [404, "`not_found`: unknown campaign"], 413, 415),
      },
    }),
    async (c) => {
      const { deps } = c.var;
      const body = c.req.valid("json");
      const campaignId = body.campaignId ?? null;
      if (campaignId !== null && !(await deps.repos.campaigns.get(campaignId)))
        fail("not_found", "No such campaign.");
      const label = body.label ?? null;
      const { id, key } = await audited(c, async ({ repos, record }) => {
        const created = await repos.apiKeys.create({ role: body.role, campaignId, label });
        record({ type: "api_key.created", campaignId, data: { keyId: created.id, role: body.role, label } });
        return created;
      });
      return c.json({ id, key, role: body.role, campaignId, label }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/api-keys",
      tags: ["api keys"],
      summary: "List API keys",
      description:
        "Live keys, oldest first: id, role, campaign, label, when created and last used. The key itself is never shown again, nor its hash.",
      security: bearer,
      middleware: [auth({ roles: ["admin"] })] as const,
      request: { query: z.object({ limit: Limit, cursor: Cursor.optional() }) },
      responses: { 200: jsonContent(ApiKeyList, "One page"), ...problems(400, 401, 403) },
    }),
    async (c) => {
      const { deps } = c.var;
      const query = c.req.valid("query");
      const page = await deps.repos.apiKeys.listPage({ limit: query.limit, cursor: query.cursor ?? null });
      const items = page.items.map((k) => ({
        id: k.id,
        role: k.role,
        campaignId: k.campaignId,
        label: k.label,
        createdAt: k.createdAt.toISOString(),
        lastUsedAt: k.lastUsedAt ? k.lastUsedAt.toISOString() : null,
      }));
      return c.json({ items, nextCursor: page.nextCursor }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/api-keys/{id}",
      tags: ["api keys"],
      summary: "Delete an API key",
      description: "The key stops working at once: every request looks its key up.",
      security: bearer,
      middleware: [auth({ roles: ["admin"] })] as const,
      request: { params: z.object({ id: KeyId }) },
      responses: {
        204: { description: "Deleted" },
        ...problems(400, 401, 403, [404, "`not_found`: no live key"]),
      },
    }),
    async (c) => {
      const { deps } = c.var;
      const { id } = c.req.valid("param");
      const { version } = await audited(c, async ({ repos, record }) => {
        const deletion = await repos.apiKeys.delete(id);
        if (!deletion.deleted) fail("not_found", "No such API key.");
        record({ type: "api_key.deleted", data: { keyId: id, version: deletion.version } });
        return deletion;
      });
      await publishChange(deps, version, { type: "api-key-deleted", id });
      return c.body(null, 204);
    },
  );
}
