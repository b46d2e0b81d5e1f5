import type { IncomingMessage, ServerResponse } from "node:http";
import { logPath } from "@phaselock/core";
import type { GatewayDeps } from "./deps.ts";
import { routeKind } from "./metrics.ts";

/**
 * The path a request line may show: no query, and never a link token or short code (`/l/<token>`
 * is logged as `/l/:code`, however it was spelt).
 */
export function loggablePath(url: string): string {
  if (LANDING.test(routedPath(url))) return "/l/:code";
  // Dot segments (`/pb/./members/…`) resolved as the router resolves them.
  return logPath(DOT_SEGMENT.test(url) ? resolveDots(url.split("?", 1)[0] ?? "") : url);
}

/** `/l/…` and `//l/…`: the landing page and redemption, or a mistyped link with its code. */
const LANDING = /^\/+l(\/|$)/;
const DOT_SEGMENT = /\/(\.|%2e)/i;

/**
 * The path as the router matches it: an absolute-form target (`GET http://host/l/…`) reduced to
 * its path, percent-escapes decoded (`/%6C/…` routes as `/l/…`), dot segments resolved.
 */
function routedPath(url: string): string {
  let path = url.split("?", 1)[0] ?? "";
  if (!path.startsWith("/")) {
    try {
      path = new URL(path).pathname;
    } catch {
      return "/:unparseable";
    }
  }
  // Escape by escape, as the router decodes (a malformed one, e.g. a link cut mid-escape, is
  // kept as sent and the rest still decoded: `/l/CODE%` is still the landing path).
  if (path.includes("%")) path = path.replace(/(?:%[0-9A-Fa-f]{2})+/g, decodeOrKeep);
  return path.includes("/.") ? resolveDots(path) : path;
}

const decodeOrKeep = (escapes: string): string => {
  try {
    return decodeURIComponent(escapes);
  } catch {
    return escapes;
  }
};

/** `.` and `..` segments resolved (never above the root), `//` kept as the router keeps it. */
function resolveDots(path: string): string {
  const out: string[] = [];
  for (const segment of path.split("/")) {
    if (/^(\.|%2e)$/i.test(segment)) continue;
    if (/^(\.|%2e){2}$/i.test(segment)) {
      if (out.length > 1) out.pop();
      continue;
    }
    out.push(segment);
  }
  return out.join("/") || "/";
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
