import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import type { AppEnv } from "../context.ts";
import { audited, publishChange } from "../effects.ts";
import { keyChangeMessage } from "../keys.ts";
import { auth } from "../middleware/auth.ts";
import { bearer, jsonContent, problems } from "../schemas.ts";

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

export function registerKeys(app: OpenAPIHono<AppEnv>): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/.well-known/jwks.json",
      tags: ["keys"],
      summary: "Public signing keys",
      description: "The active key and every retired key that signed a token not yet expired.",
      responses: { 200: jsonContent(Jwks, "JSON Web Key Set") },
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
}
