import type { SQL } from "drizzle-orm";
import type { PgDatabase, PgQueryResultHKT } from "drizzle-orm/pg-core";

/**
 * Rows of a raw query on either driver (postgres.js answers an array, PGlite `{ rows }`). Values
 * are not mapped by drizzle and differ by driver too, so cast in SQL (`::text`, `::int`).
 */
export async function queryRows<T extends Record<string, unknown>>(
  // biome-ignore lint/suspicious/noExplicitAny: any schema; only `execute` is used
  db: PgDatabase<PgQueryResultHKT, any>,
  query: SQL,
): Promise<T[]> {
  const res: unknown = await db.execute(query);
  if (Array.isArray(res)) return res as T[];
  return (res as { rows: T[] }).rows;
}
