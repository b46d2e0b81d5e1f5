import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline, Readable } from "node:stream";
import { getRequestListener } from "@hono/node-server";
import type { RouteList } from "@phaselock/core";
import type { GatewayDeps } from "./deps.ts";
import { isProxied } from "./paths.ts";
import { createProxy, type ProxyResult } from "./proxy-core.ts";
import { refusal, renderRefusal } from "./refusals.ts";
import { requestIdFor } from "./request-context.ts";
import { logFailure, observeRequest } from "./request-log.ts";

/**
 * Anything with Hono's `fetch` and `routes`: the gateway app, for every request that is not
 * `/pb/…`; its routes decide what its request lines show (request-log.ts).
 */
export interface FetchApp extends RouteList {
  fetch(request: Request, env: { incoming: IncomingMessage; outgoing: ServerResponse }): unknown;
}

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void;

const single = (v: string | string[] | undefined): string | undefined =>
  Array.isArray(v) ? v.join(", ") : v;

/**
 * The gateway on node:http: `/pb/…` answered straight from node's request and response objects
 * (no `Request`, `Response`, `Headers` or web streams on the way), through the same proxy core as
 * the Hono route; everything else (landing page, redemption, `/pb` itself, health, OpenAPI)
 * handed to the Hono app. About half the CPU per proxied request of the Hono route (pnpm bench).
 */
export function createNodeHandler(deps: GatewayDeps, app: FetchApp): NodeHandler {
  const proxy = createProxy(deps);
  const fallback = getRequestListener((request, env) => app.fetch(request, env as never));
  const observe = observeRequest(deps, app);

  return (req, res) => {
    const url = req.url ?? "";
    const h = req.headers;
    const requestId = requestIdFor(single(h["x-request-id"]));
    if (observe) observe(req, res, url, requestId);
    // The gateway's own routes under /pb (session end) are Hono's; the proxy never forwards them.
    if (!isProxied(url)) {
      // The Hono app takes the same id (a sane one passes requestIdFor unchanged).
      h["x-request-id"] = requestId;
      void fallback(req, res);
      return;
    }
    proxy({
      method: req.method ?? "GET",
      rawPath: url,
      authorization: single(h.authorization),
      cookie: single(h.cookie),
      accept: single(h.accept),
      peerIp: req.socket.remoteAddress,
      forwardedFor: single(h["x-forwarded-for"]),
      contentLength: single(h["content-length"]),
      connection: single(h.connection),
      requestId,
      headers: Object.entries(h),
      body: req,
    }).then(
      (result) => {
        try {
          send(res, result);
        } catch (err) {
          // node refuses a header value it cannot send: fail closed, never crash the process.
          logFailure(deps, `${(err as Error).name} while sending a ${req.method} answer`, requestId);
          const body = result.body;
          if (body instanceof Readable) body.destroy();
          else if (body !== null && typeof body !== "string") body.cancel().catch(() => {});
          if (res.headersSent) {
            res.destroy();
            return;
          }
          const out = renderRefusal(refusal("unavailable"), single(h.accept), requestId);
          res.writeHead(out.status, { ...out.headers, "Content-Length": Buffer.byteLength(out.body) });
          res.end(out.body);
        }
      },
      () => res.destroy(), // createProxy never rejects; a bug here must not leave the socket open
    );
  };
}

function send(res: ServerResponse, result: ProxyResult): void {
  const { body } = result;
  const headers = result.headers;
  if (result.close) headers.push("connection", "close");
  if (body === null || typeof body === "string") {
    // A string is ours (refusal or minimised answer): its length is known. A null body is a HEAD
    // or no-body answer, whose upstream Content-Length (if any) is already in the list.
    if (body !== null) headers.push("content-length", String(Buffer.byteLength(body)));
    res.writeHead(result.status, headers);
    res.end(body ?? undefined);
    return;
  }
  res.writeHead(result.status, headers);
  const stream = body instanceof Readable ? body : Readable.fromWeb(body as never);
  // On a client that goes away, pipeline destroys the upstream body (and its connection).
  pipeline(stream, res, () => {});
}
