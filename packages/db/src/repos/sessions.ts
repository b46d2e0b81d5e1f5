import { and, eq, gt, inArray, isNull, sql } from "drizzle-orm";
import type { Db } from "../client.ts";
import { gatewaySecrets, links, sessions } from "../schema/index.ts";
import { toScopes } from "./entitlements.ts";
import type { Link } from "./links.ts";
import { liveSessionOf, sessionColumns } from "./live-session.ts";
import { logPolicyChange } from "./policy-state.ts";

export type Session = Omit<typeof sessions.$inferSelect, "tokenHash">;

export interface NewSession {
  id: string;
  /** sha256 of the credential, hex: the credential itself is never stored */
  tokenHash: string;
  linkId: string;
  deviceId: string;
  createdAt: Date;
  expiresAt: Date;
}

export interface SessionsRepo {
  /** The session with this credential hash and its link, in one indexed query. */
  resolve(tokenHash: string): Promise<{ session: Session; link: Link } | null>;
  /** The device's live (not ended, not expired) session of the link, if any. */
  findLive(linkId: string, deviceId: string, now: Date): Promise<Session | null>;
  open(s: NewSession): Promise<void>;
  /** Gives a live session a new credential; the old one stops working. False when it has ended. */
  rotate(id: string, tokenHash: string, now: Date): Promise<boolean>;
  /**
   * Ends the session with this credential hash (a policy write: bumps the version, so every
   * gateway drops what it cached). `null` when there is no such live session.
   */
  end(tokenHash: string, reason: string, now: Date): Promise<{ id: string; version: number } | null>;
  /** Live sessions per link, for the console. */
  countActive(linkIds: readonly string[], now: Date): Promise<Map<string, number>>;
}

export const sessionsRepo = (db: Db): SessionsRepo => ({
  resolve: async (tokenHash) => {
    const [row] = await db
      .select({ session: sessionColumns, link: links })
      .from(sessions)
      .innerJoin(links, eq(links.id, sessions.linkId))
      .where(eq(sessions.tokenHash, tokenHash));
    if (!row) return null;
    return { session: row.session, link: { ...row.link, scopes: toScopes(row.link.scopes) } };
  },

  findLive: (linkId, deviceId, now) => liveSessionOf(db, linkId, deviceId, now),

  open: async (s) => {
    await db.insert(sessions).values(s);
  },

  // A policy write like `end`: other gateways may hold the old credential in their caches, which
  // they re-validate when the version moves (read from the log at their next heartbeat or poll).
  rotate: (id, tokenHash, now) =>
    db.transaction(async (tx) => {
      const rows = await tx
        .update(sessions)
        .set({ tokenHash })
        .where(and(eq(sessions.id, id), isNull(sessions.endedAt), gt(sessions.expiresAt, now)))
        .returning({ id: sessions.id });
      if (rows.length === 0) return false;
      await logPolicyChange(tx, { type: "session-rotated", sessionId: id });
      return true;
    }),

  end: (tokenHash, reason, now) =>
    db.transaction(async (tx) => {
      const [row] = await tx
        .update(sessions)
        .set({ endedAt: now, endedReason: reason })
        .where(and(eq(sessions.tokenHash, tokenHash), isNull(sessions.endedAt)))
        .returning({ id: sessions.id });
      if (!row) return null;
      return { id: row.id, version: await logPolicyChange(tx, { type: "session-ended", sessionId: row.id }) };
    }),

  countActive: async (linkIds, now) => {
    const out = new Map<string, number>();
    if (linkIds.length === 0) return out;
    const rows = await db
      .select({ linkId: sessions.linkId, n: sql<number>`count(*)::int` })
      .from(sessions)
      .where(
        and(inArray(sessions.linkId, [...linkIds]), isNull(sessions.endedAt), gt(sessions.expiresAt, now)),
      )
      .groupBy(sessions.linkId);
    for (const r of rows) out.set(r.linkId, r.n);
    return out;
  },
});

/**
 * A secret shared by every gateway, created by the first that asks (`on conflict do nothing`,
 * then read back, so concurrent first starts agree on one value).
 */
export async function sharedGatewaySecret(db: Db, name: string, fresh: () => string): Promise<string> {
  await db.insert(gatewaySecrets).values({ name, value: fresh() }).onConflictDoNothing();
  const [row] = await db
    .select({ value: gatewaySecrets.value })
    .from(gatewaySecrets)
    .where(eq(gatewaySecrets.name, name));
  if (!row) throw new Error(`gateway secret ${name} missing after insert`);
  return row.value;
}
