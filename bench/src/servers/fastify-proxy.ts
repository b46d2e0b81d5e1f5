/**
 * Child: what a Node user would build instead of the gateway today: fastify 5, @fastify/jwt
 * (fast-jwt: EdDSA pinned, issuer and audience pinned, its verify cache on) and @fastify/reply-from
 * (undici, keep-alive pool). It verifies the link's own EdDSA token against the token service's
 * public key, sets the same context headers as the gateway and drops the credential, but checks
 * nothing beyond the JWT (no revocation, phase, scope, entitlement, rate limit, audit or
 * response minimisation).
 */
import fastifyJwt from "@fastify/jwt";
import replyFrom from "@fastify/reply-from";
import Fastify from "fastify";
import { runChild } from "../child.ts";

export interface FastifyProxyConfig {
  upstreamUrl: string;
  /** SPKI PEM of the token service's Ed25519 signing key */
  publicKeyPem: string;
  issuer: string;
  audience: string;
  phonebankSecret: string;
}

interface Claims {
  sub: string;
  jti: string;
  cmp: string;
  scp: string | string[];
}

runChild<FastifyProxyConfig>(async (config) => {
  const app = Fastify({ logger: false, keepAliveTimeout: 30_000 });
  await app.register(fastifyJwt, {
    secret: { public: config.publicKeyPem },
    verify: {
      algorithms: ["EdDSA"],
      allowedIss: config.issuer,
      allowedAud: config.audience,
      cache: true,
    },
  });
  await app.register(replyFrom, {
    base: config.upstreamUrl,
    undici: { connections: 64, pipelining: 1, keepAliveTimeout: 30_000 },
  });
  app.addHook("onRequest", async (req, reply) => {
    try {
      await req.jwtVerify();
    } catch {
      return reply.code(401).send({ error: { code: "token_invalid" } });
    }
  });
  app.get("/pb/*", (req, reply) => {
    const claims = req.user as Claims;
    return reply.from(req.url.slice(3), {
      rewriteRequestHeaders: (_req, headers) => {
        const { authorization: _a, cookie: _c, ...rest } = headers;
        return {
          ...rest,
          "x-phaselock-campaign": claims.cmp,
          "x-phaselock-volunteer": claims.sub,
          "x-phaselock-link": claims.jti,
          "x-phaselock-scopes": Array.isArray(claims.scp) ? claims.scp.join(" ") : claims.scp,
          "x-phaselock-gateway-secret": config.phonebankSecret,
        };
      },
    });
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const address = app.server.address();
  const port = typeof address === "object" && address ? address.port : 0;
  return {
    port,
    stop: async () => {
      await app.close();
      return undefined;
    },
  };
});
