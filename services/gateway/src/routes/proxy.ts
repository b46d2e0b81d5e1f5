import { Readable } from "node:stream";
import type { Hono } from "hono";
import type { GatewayEnv } from "../deps.ts";
import type { ProxyHandler, ProxyResult } from "../proxy-core.ts";
import { peerIp } from "../request-context.ts";
import { headersFromList } from "../upstream.ts";

/** `/pb/*` on Hono: a thin adapter over the transport-neutral proxy (proxy-core.ts). */
export function registerProxy(app: Hono<GatewayEnv>, proxy: ProxyHandler) {
  app.all("/pb", (c) => c.redirect("/pb/", 308));
  app.all("/pb/*", async (c) => {
    const h = c.req.raw.headers;
    const result = await proxy({
      method: c.req.method,
      rawPath: rawPath(c),
      authorization: h.get("authorization") ?? undefined,
      cookie: h.get("cookie") ?? undefined,
      accept: h.get("accept") ?? undefined,
      peerIp: peerIp(c),
      forwardedFor: h.get("x-forwarded-for") ?? undefined,
      contentLength: h.get("content-length") ?? undefined,
      connection: h.get("connection") ?? undefined,
      requestId: c.get("requestId"),
      headers: h,
      body: c.req.raw.body,
    });
    return toResponse(result);
  });
}

function toResponse(result: ProxyResult): Response {
  const { body } = result;
  const web =
    body instanceof Readable
      ? // Node's web stream type and the global one are the same object at run time.
        (Readable.toWeb(body) as unknown as ReadableStream<Uint8Array>)
      : body;
  return new Response(web, { status: result.status, headers: headersFromList(result.headers) });
}

/** The path as the client sent it: checks run on the raw string, before any URL normalisation. */
function rawPath(c: { env: unknown; req: { url: string } }): string {
  const incoming = (c.env as { incoming?: { url?: string } } | undefined)?.incoming?.url;
  if (incoming) return incoming;
  const u = new URL(c.req.url);
  return u.pathname + u.search;
}
