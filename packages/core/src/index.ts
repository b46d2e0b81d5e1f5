export * from "./clock.ts";
export * from "./data-dir.ts";
export * from "./dev-secrets.ts";
export * from "./env.ts";
export * from "./errors.ts";
export * from "./redis-url.ts";
export * from "./scopes.ts";
export * from "./secrets.ts";
