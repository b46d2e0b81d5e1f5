export { createApp } from "./app.ts";
export { admitAnswer, type CheckOutcome, type CheckRequest, checkRequest } from "./checks.ts";
export type { GatewayConfig, GatewayDeps, GatewayEnv, LinkStore, PolicyView, TokenVerifier } from "./deps.ts";
export {
  envSchema as gatewayEnvSchema,
  type GatewayEnvVars,
  type GatewayServiceConfig,
  gatewayEnvShape,
  gatewayProductionRules,
  parseGatewayEnv,
  toGatewayConfig,
} from "./env.ts";
export { createLimits, DEFAULT_LIMITS, type Limits, unlimited } from "./limits.ts";
export { createGatewayMetrics, type GatewayMetrics, REFUSAL_CODES, ROUTE_KINDS } from "./metrics.ts";
export { type AllowList, compileAllowList } from "./minimise.ts";
export { createNodeHandler, type NodeHandler } from "./node-handler.ts";
export { createProxy, type ProxyHandler, type ProxyRequest, type ProxyResult } from "./proxy-core.ts";
export { REFUSALS, type RefusalCode } from "./refusals.ts";
export { ipHash, SESSION_COOKIE } from "./request-context.ts";
export {
  createGateway,
  type Gateway,
  type GatewayInfra,
  gatewayAppConfig,
  startVersionPoller,
} from "./service.ts";
export * from "./upstream.ts";
export { createUpstreamRoutes, DEFAULT_UPSTREAM_ROUTES, type UpstreamRoute } from "./upstream-routes.ts";
