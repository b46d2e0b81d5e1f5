export * from "./client.ts";
export * from "./embedded.ts";
export { grantServicesRole, SERVICES_GRANTS_SQL, servicesGrantsSql } from "./grants.ts";
export * from "./migrate.ts";
export * from "./repos/index.ts";
export * as schema from "./schema/index.ts";
export * from "./snapshot.ts";
export { executePipelined, queryRows } from "./sql.ts";
export { DEFAULT_STALL_DEADLINE_MS, type StallWatchOptions, stallWatchFor } from "./stall-watch.ts";
