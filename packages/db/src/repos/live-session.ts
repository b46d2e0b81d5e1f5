import { and, eq, getTableColumns, gt, isNull, sql } from "drizzle-orm";
import type { Db, Tx } from "../client.ts";
import { sessions } from "../schema/index.ts";

const { tokenHash: _hash, ...sessionColumns } = getTableColumns(sessions);

/** A session's columns, never its credential's hash. */
export { sessionColumns };

/**
 * The device's live (not ended, not expired) session of the link, newest first, or null: for the
 * landing page, and for a redemption inside its transaction (after the link row's lock).
 */
export async function liveSessionOf(db: Db | Tx, linkId: string, deviceId: string, now: Date) {
  const [row] = await db
    .select(sessionColumns)
    .from(sessions)
    .where(
      and(
        eq(sessions.linkId, linkId),
        eq(sessions.deviceId, deviceId),
        isNull(sessions.endedAt),
        gt(sessions.expiresAt, now),
      ),
    )
    .orderBy(sql`${sessions.createdAt} desc`)
    .limit(1);
  return row ?? null;
}
