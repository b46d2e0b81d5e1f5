import type { IncomingMessage, ServerResponse } from "node:http";
import { createLogPath, type LogPath, type RouteList, routeLogPath, UNMATCHED } from "@phaselock/core";
import type { GatewayDeps } from "./deps.ts";
import { routeKind } from "./metrics.ts";
import { isProxied, normalizePath, PROXY_PREFIX } from "./paths.ts";
import type { UpstreamRoutes } from "./upstream-routes.ts";

/**
 * The path a request line may show, from the routes the gateway serves (log-path.ts): what goes to
 * the proxy by the upstream route it matched (`/pb/members/m_1`, or `/pb/…` for a path the proxy
 * refuses or has no route for), everything else by the app's own routes (`/l/<token or code>` as
 * `/l/:token`, however it was spelt; `/x/<code>` as `/…`). Never the query.
 */
export function requestLogPath(
  app: RouteList,
  routes: UpstreamRoutes,
): (url: string, method: string) => string {
  const own = routeLogPath(app);
  const byPattern = new Map<string, LogPath>();
  return (url, method) => {
    if (!isProxied(url)) return own(url);
    const normalized = normalizePath(url);
    const matched = normalized.ok ? routes(method, normalized.path) : null;
    if (!normalized.ok || !matched) return `${PROXY_PREFIX}/${UNMATCHED}`;
    // `GET /members/:id`: the pattern after the method.
    const pattern = matched.pattern.slice(matched.pattern.indexOf(" ") + 1);
    if (!pattern.includes(":")) return PROXY_PREFIX + pattern; // all literal: the path is the pattern
    let mask = byPattern.get(pattern);
    if (!mask) {
      mask = createLogPath([pattern]);
      byPattern.set(pattern, mask);
    }
    return PROXY_PREFIX + mask(normalized.path);
  };
}

/**
 * Times every request on node:http and, when it is answered, counts it in the latency histogram
 * and writes its one JSON line (method, path, status, duration, request id). Undefined when the
 * gateway has neither metrics nor a logger. One `close` listener per request (aborted ones too); nothing else.
 */
export function observeRequest(deps: GatewayDeps, app: RouteList) {
  const { metrics, logger } = deps;
  if (!metrics && !logger) return undefined;
  const logs = logger?.isLevelEnabled("info") === true;
  // The route table read per request, as the proxy reads it.
  const logPath = requestLogPath(app, (m, path) => deps.routes(m, path));
  // In a `close` listener a throw would end the process: a route table that fails shows nothing.
  const shownPath = (url: string, method: string): string => {
    try {
      return logPath(url, method);
    } catch {
      return `/${UNMATCHED}`;
    }
  };
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
            path: shownPath(url, method),
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
