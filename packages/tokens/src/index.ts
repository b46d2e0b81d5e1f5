export * from "./constants.ts";
export * from "./errors.ts";
export * from "./key-encryption.ts";
export * from "./keys.ts";
export * from "./sign.ts";
export * from "./verify.ts";
export * from "./verify-cache.ts";
