/**
 * Child: the usual Node alternative: express 5, express-jwt 8 (public key, algorithm, issuer and
 * audience pinned) and http-proxy-middleware 3 with a keep-alive agent. It sets the same context
 * headers as the gateway and drops the bearer token, but checks nothing beyond the JWT itself (no
 * revocation, phase, scope, entitlement, rate limit, audit or response minimisation).
 *
 * express-jwt verifies with jsonwebtoken 9, which has no EdDSA (only HS/RS/PS/ES): this proxy is
 * given an ES256 (P-256) token with the same claims, the closest asymmetric algorithm it accepts.
 */
import { Agent, createServer, type IncomingMessage } from "node:http";
import express, { type NextFunction, type Request, type Response } from "express";
import { expressjwt } from "express-jwt";
import { createProxyMiddleware } from "http-proxy-middleware";
import { close, listen, runChild } from "../child.ts";

export interface ExpressProxyConfig {
  upstreamUrl: string;
  /** SPKI PEM of the ES256 key */
  publicKeyPem: string;
  issuer: string;
  audience: string;
  phonebankSecret: string;
}

interface Claims {
  sub: string;
  jti: string;
  cmp: string;
  scp: string;
}

runChild<ExpressProxyConfig>(async (config) => {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const app = express();
  app.disable("x-powered-by");
  app.use(
    "/pb",
    expressjwt({
      secret: config.publicKeyPem,
      algorithms: ["ES256"],
      issuer: config.issuer,
      audience: config.audience,
    }),
    createProxyMiddleware<IncomingMessage & { auth?: Claims }>({
      target: config.upstreamUrl,
      agent,
      on: {
        proxyReq: (proxyReq, req) => {
          const auth = req.auth;
          proxyReq.removeHeader("authorization");
          proxyReq.removeHeader("cookie");
          if (!auth) return;
          proxyReq.setHeader("x-phaselock-campaign", auth.cmp);
          proxyReq.setHeader("x-phaselock-volunteer", auth.sub);
          proxyReq.setHeader("x-phaselock-link", auth.jti);
          proxyReq.setHeader("x-phaselock-scopes", auth.scp);
          proxyReq.setHeader("x-phaselock-gateway-secret", config.phonebankSecret);
        },
      },
    }),
  );
  app.use((err: { status?: number; code?: string }, _req: Request, res: Response, _next: NextFunction) => {
    res.status(err.status ?? 500).json({ error: { code: err.code ?? "internal" } });
  });
  const server = createServer(app);
  server.keepAliveTimeout = 30_000;
  const port = await listen(server);
  return {
    port,
    stop: async () => {
      await close(server);
      agent.destroy();
      return undefined;
    },
  };
});
