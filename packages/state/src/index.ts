export * from "./bus.ts";
export * from "./changes.ts";
export * from "./logged-feed.ts";
export * from "./policy-state.ts";
export * from "./rate-limit.ts";
export * from "./record-quota.ts";
export * from "./redis-bus.ts";
export * from "./stores.ts";
