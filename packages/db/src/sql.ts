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

/** Resolves once the event loop has turned: every query started before it has been sent. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Runs `statements` in order on `db` (a transaction's connection, typically), building each next
 * one while Postgres runs the previous: the iterator's work (hashing, encoding a chunk of rows)
 * overlaps the server's instead of following it. At most one statement is outstanding, so they
 * run strictly in order and the first failure stops the rest (and rejects). Returns how many ran.
 */
export async function executePipelined(
  // biome-ignore lint/suspicious/noExplicitAny: any schema; only `execute` is used
  db: PgDatabase<PgQueryResultHKT, any>,
  statements: Iterable<SQL>,
): Promise<number> {
  let running: Promise<unknown> | undefined;
  let count = 0;
  for (const statement of statements) {
    await running;
    const started = Promise.resolve(db.execute(statement));
    // Observed now: a failure while the next statement is being built is rethrown below.
    started.catch(() => {});
    running = started;
    count++;
    // Let the driver put the statement on the wire before the next one is built synchronously.
    await nextTurn();
  }
  await running;
  return count;
}
