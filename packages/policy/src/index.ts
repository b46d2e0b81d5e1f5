export * from "./access.ts";
export * from "./issuance.ts";
export * from "./revocations.ts";
export * from "./timeline.ts";
export * from "./types.ts";
