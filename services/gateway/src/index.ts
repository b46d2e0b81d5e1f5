export {
  createApp,
  type GatewayConfig,
  type GatewayDeps,
  type GatewayEnv,
  type LinkStore,
  SESSION_COOKIE,
} from "./app.ts";
export {
  envSchema as gatewayEnvSchema,
  type GatewayEnvVars,
  type GatewayServiceConfig,
  gatewayEnvShape,
  gatewayProductionRules,
  parseGatewayEnv,
  toGatewayConfig,
} from "./env.ts";
export { createGatekeeper, type PolicyView, type TokenVerifier } from "./gatekeeper.ts";
export { createLimits, DEFAULT_LIMITS, type Limits, unlimited } from "./limits.ts";
export { createResponseFilter, DEFAULT_RESPONSE_RULES, type ResponseRule } from "./minimise.ts";
export { createNodeHandler, type NodeHandler } from "./node-handler.ts";
export { createProxy, type ProxyHandler, type ProxyRequest, type ProxyResult } from "./proxy-core.ts";
export { createRouteScopes, DEFAULT_ROUTE_RULES, type RouteRule } from "./route-scopes.ts";
export {
  createGateway,
  type Gateway,
  type GatewayInfra,
  gatewayAppConfig,
  startVersionPoller,
} from "./service.ts";
export * from "./upstream.ts";
