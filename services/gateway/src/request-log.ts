import type { IncomingMessage, ServerResponse } from "node:http";
import { logPath } from "@phaselock/core";
import type { GatewayDeps } from "./deps.ts";
import { routeKind } from "./metrics.ts";

/**
 * The path a request line may show: no query, and never a link token or short code (`/l/<token>`
 * is logged as `/l/:code`).
 */
export function loggablePath(url: string): string {
  // Dot segments (`/./l/…`, `/x/../l/…`, `/%2e/l/…`) are resolved as the router resolves them,
  // or a token sent behind one would reach the landing page and be logged as sent.
  const path = DOT_SEGMENT.test(url) ? resolveDots(url) : url;
  if (path.startsWith("/l/")) return "/l/:code";
  return logPath(path);
}

const DOT_SEGMENT = /\/(\.|%2e)/i;

function resolveDots(url: string): string {
  try {
    return new URL(url.split("?", 1)[0] ?? "", "http://gateway.invalid").pathname;
  } catch {
    return "/:unparseable";
  }
}

/**
 * Times every request on node:http and, when it is answered, counts it in the latency histogram
 * and writes its one JSON line (method, path, status, duration, request id). Undefined when the
 * gateway has neither metrics nor a logger. One `close` listener per request (aborted ones too); nothing else.
 */
export function observeRequest(deps: GatewayDeps) {
  const { metrics, logger } = deps;
  if (!metrics && !logger) return undefined;
  const logs = logger?.isLevelEnabled("info") === true;
  return (req: IncomingMessage, res: ServerResponse, url: string, requestId: string): void => {
    const started = performance.now();
    res.once("close", () => {
      const seconds = (performance.now() - started) / 1000;
      const method = req.method ?? "GET";
      const route = routeKind(url, method);
      metrics?.request(route, res.statusCode, seconds);
      if (logs) {
        logger?.info(
          {
            method,
            route,
            path: loggablePath(url),
            status: res.statusCode,
            ms: Math.round(seconds * 10_000) / 10,
            requestId,
          },
          "request",
        );
      }
    });
  };
}

/**
 * A failure the gateway answered for (refused as unavailable): one `error` line through the
 * service's logger when it has one, else on stderr. `what` must never quote a header or a body.
 */
export function logFailure(deps: Pick<GatewayDeps, "logger">, what: string, requestId?: string): void {
  if (deps.logger) deps.logger.error({ requestId }, what);
  else console.error(`gateway: ${what}`);
}
