export * from "./bench.ts";
export * from "./chain.ts";
export * from "./events.ts";
export * from "./export-format.ts";
export * from "./sink.ts";
export * from "./store.ts";
export * from "./writer.ts";
