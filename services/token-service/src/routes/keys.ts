import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../context.ts";
import { audited, publishChange } from "../effects.ts";
import { fail } from "../errors.ts";
import { keyChangeMessage } from "../keys.ts";
import { auth } from "../middleware/auth.ts";
import { bearer, DisplayText, jsonBody, jsonContent, problems } from "../schemas.ts";

const Jwk = z
  .object({
    kty: z.literal("OKP"),
    crv: z.literal("Ed25519"),
    x: z.string(),
    kid: z.string(),
    alg: z.literal("EdDSA"),
    use: z.literal("sig"),
  })
  .openapi("Jwk");

const Jwks = z.object({ keys: z.array(Jwk) }).openapi("Jwks");

const Rotated = z
  .object({
    kid: z.string().openapi({ description: "the new active key" }),
    previousKid: z
      .string()
      .nullable()
      .openapi({ description: "retired, published until its last token expires" }),
  })
  .openapi("KeyRotated");

const Revoked = z
  .object({
    kid: z.string().openapi({ description: "the revoked key: gone from the JWKS and every gateway" }),
    revokedAt: z.string().openapi({ description: "ISO-8601" }),
    rotatedTo: z
      .string()
      .nullable()
      .openapi({ description: "the new active key, when the revoked one was active" }),
  })
  .openapi("KeyRevoked");

const RevokeBody = z
  .object({ reason: DisplayText(500) })
  .strict()
  .openapi("KeyRevoke");

export function registerKeys(app: OpenAPIHono<AppEnv>): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/.well-known/jwks.json",
      tags: ["keys"],
      summary: "Public signing keys",
      description: "The active key and every retired key that signed a token not yet expired.",
      responses: { 200: jsonContent(Jwks, "JSON Web Key Set"), ...problems() },
    }),
    async (c) => {
      const { deps } = c.var;
      const jwks = await deps.keys.jwks(deps.clock.now());
      c.header("Cache-Control", "public, max-age=60");
      return c.json(jwks, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/keys/rotate",
      tags: ["keys"],
      summary: "Rotate the signing key",
      description:
        "A new key signs from now on; the old one is retired but stays in the JWKS until every token it signed has expired.",
      security: bearer,
      middleware: [auth({ roles: ["admin"] })] as const,
      responses: { 201: jsonContent(Rotated, "Rotated"), ...problems(401, 403) },
    }),
    async (c) => {
      const { deps } = c.var;
      const rotated = await audited(c, async ({ repos, record }) => {
        const r = await deps.keys.rotate(repos.signingKeys);
        record({ type: "key.rotated", data: { kid: r.kid, previousKid: r.previousKid, version: r.version } });
        return r;
      }).catch(async (err: unknown) => {
        // The new key may be held in memory though its row rolled back: sign with the stored one.
        await deps.keys.refresh().catch(() => {});
        throw err;
      });
      const { version, change } = keyChangeMessage(rotated);
      await publishChange(deps, version, change);
      return c.json({ kid: rotated.kid, previousKid: rotated.previousKid }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/keys/{kid}/revoke",
      tags: ["keys"],
      summary: "Revoke a signing key (compromise)",
      description:
        "Emergency: the key leaves the JWKS at once and every gateway drops it within the propagation bound, so every link it signed (and every session opened from one) is refused `token_invalid`. When it is the active key, a new key is rotated in first. Reissue the affected campaigns' links afterwards (docs/operations.md).",
      security: bearer,
      middleware: [auth({ roles: ["admin"] })] as const,
      request: {
        params: z.object({ kid: z.string().min(1).max(128) }),
        body: jsonBody(RevokeBody),
      },
      responses: {
        200: jsonContent(Revoked, "Revoked"),
        ...problems(
          400,
          401,
          403,
          [404, "`not_found`: unknown key"],
          [409, "`conflict`: already revoked"],
          413,
          415,
        ),
      },
    }),
    async (c) => {
      const { deps } = c.var;
      const { kid } = c.req.valid("param");
      const { reason } = c.req.valid("json");
      await deps.keys.refresh();
      // The revocation, any rotation it needs and their events commit together.
      const r = await audited(c, async ({ repos, record }) => {
        const res = await deps.keys.revoke(kid, reason, repos.signingKeys);
        if (res.status !== "revoked") return res;
        if (res.rotated) {
          const { kid: newKid, previousKid, version } = res.rotated;
          record({ type: "key.rotated", data: { kid: newKid, previousKid, version } });
        }
        const rotatedTo = res.rotated?.kid ?? null;
        record({ type: "key.revoked", data: { kid, reason, rotatedTo, version: res.version } });
        return res;
      }).catch(async (err: unknown) => {
        // A rotation held in memory may have rolled back with the revocation: reload the stored key.
        await deps.keys.refresh().catch(() => {});
        throw err;
      });
      if (r.status !== "revoked") {
        return r.status === "not_found"
          ? fail("not_found", "No such signing key.")
          : fail("conflict", "This signing key is already revoked.");
      }
      if (r.rotated) {
        const { version, change } = keyChangeMessage(r.rotated);
        await publishChange(deps, version, change);
      }
      await publishChange(deps, r.version, { type: "signing-key-revoked", kid, reason });
      const rotatedTo = r.rotated?.kid ?? null;
      return c.json({ kid, revokedAt: deps.clock.now().toISOString(), rotatedTo }, 200);
    },
  );
}
