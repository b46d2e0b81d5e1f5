export * from "./access.ts";
export * from "./closures.ts";
export * from "./issuance.ts";
export * from "./revocation-schema.ts";
export * from "./revocations.ts";
export * from "./timeline.ts";
export * from "./types.ts";
