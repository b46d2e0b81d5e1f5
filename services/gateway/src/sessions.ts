import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { sha256Hex } from "@phaselock/core";
import type { LinkClaims } from "@phaselock/policy";
import type { DeviceIds, LinkRecord, ResolvedSession, SessionRecord, SessionStore } from "./deps.ts";

// Sessions: what a redeemed link opens. The credential is random (128 bits) and stored only as
// its sha256, so the database holds nothing that opens a session and no new secret has to be
// shared between gateways; each session is a row, so it can be counted and ended on its own.

const SESSION_PREFIX = "pls_";
const SESSION = /^pls_[A-Za-z0-9_-]{22}$/;
/** A compact JWS: three base64url segments. */
const JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
/** A short link code: 22 base64url characters (128 bits). */
export const LINK_CODE = /^[A-Za-z0-9_-]{22}$/;

/** A fresh session credential: `pls_` and 128 random bits. */
export const newSessionCredential = (): string => SESSION_PREFIX + randomBytes(16).toString("base64url");

export const isSessionCredential = (s: string): boolean => SESSION.test(s);

/** Whether a credential is a link (a JWS or a short link code) rather than a session. */
export const looksLikeLink = (s: string): boolean => JWS.test(s) || LINK_CODE.test(s);

export const credentialHash = (credential: string): string => sha256Hex(credential);

const seconds = (d: Date): number => Math.floor(d.getTime() / 1000);

/**
 * The claims of a stored link. A session or short link carries no signature of its own: its
 * link row holds every claim of the token that was issued, and is checked exactly like one.
 */
export function claimsOfLink(link: LinkRecord): LinkClaims {
  return {
    iss: "",
    aud: "phaselock-gateway",
    sub: link.volunteerRef,
    jti: link.id,
    iat: seconds(link.issuedAt),
    nbf: seconds(link.notBefore),
    exp: seconds(link.expiresAt),
    cmp: link.campaignId,
    cst: link.contestId,
    phs: link.phase,
    scp: [...link.scopes],
  };
}

export interface SessionCacheOptions {
  store: SessionStore;
  /** the policy version the gateway decides with: an entry read at an older one is read again */
  version: () => number;
  nowMs: () => number;
  maxEntries?: number;
  /** how long an unknown credential is remembered, so random guesses cannot hammer Postgres */
  missTtlMs?: number;
}

export interface SessionCache {
  resolve(tokenHash: string): Promise<ResolvedSession | null>;
  /**
   * The store's `rotate`, and then this gateway forgets the old credential: it is known here only
   * by its hash, so every cached entry of the session goes (a re-opening is rare, the scan cheap).
   */
  rotate(id: string, tokenHash: string, now: Date): Promise<boolean>;
  drop(tokenHash: string): void;
  size(): number;
}

/**
 * `token_hash → {session, link}` in a bounded LRU. A hit costs no query, a miss one indexed join.
 * Every entry is tagged with the policy version it was read at and used only while that is still
 * the current version: ending a session bumps the version, so a gateway drops every older entry
 * as soon as it hears the change or reloads (its feed message or the version poll), and a
 * gateway that missed the message is still bound by the staleness bound of its policy state.
 */
export function createSessionCache(opts: SessionCacheOptions): SessionCache {
  const max = opts.maxEntries ?? 100_000;
  const missTtl = opts.missTtlMs ?? 1000;
  const hits = new Map<string, { version: number; value: ResolvedSession }>();
  const misses = new Map<string, number>();
  return {
    async resolve(tokenHash) {
      const version = opts.version();
      const hit = hits.get(tokenHash);
      if (hit && hit.version === version) {
        hits.delete(tokenHash);
        hits.set(tokenHash, hit);
        return hit.value;
      }
      const now = opts.nowMs();
      const missUntil = misses.get(tokenHash);
      if (missUntil !== undefined && missUntil > now) return null;
      const value = await opts.store.resolve(tokenHash);
      if (!value) {
        hits.delete(tokenHash);
        if (misses.size >= max) misses.delete(misses.keys().next().value!);
        misses.set(tokenHash, now + missTtl);
        return null;
      }
      misses.delete(tokenHash);
      hits.delete(tokenHash);
      if (hits.size >= max) hits.delete(hits.keys().next().value!);
      // The version read before the query: a session ended meanwhile has a later version.
      hits.set(tokenHash, { version, value });
      return value;
    },
    async rotate(id, tokenHash, now) {
      const rotated = await opts.store.rotate(id, tokenHash, now);
      for (const [hash, hit] of hits) if (hit.value.session.id === id) hits.delete(hash);
      return rotated;
    },
    drop(tokenHash) {
      hits.delete(tokenHash);
    },
    size: () => hits.size,
  };
}

/** Whether a session is still open at `now` (not ended, not past its own expiry). */
export const sessionLive = (s: SessionRecord, now: Date): boolean =>
  s.endedAt === null && s.expiresAt.getTime() > now.getTime();

const DEVICE = /^(dev_[A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{22})$/;

/**
 * Device ids issued and authenticated by the gateway: `dev_<128 random bits>.<HMAC tag>`, the
 * MAC key shared by every gateway through Postgres. A value a client invents fails the tag and
 * counts as no device at all, so it cannot pose as one device across many redemptions.
 */
export function createDeviceIds(key: () => Buffer | undefined): DeviceIds {
  const tag = (k: Buffer, id: string) => createHmac("sha256", k).update(id).digest().subarray(0, 16);
  const required = (): Buffer => {
    const k = key();
    if (!k) throw new Error("device key not loaded");
    return k;
  };
  return {
    issue() {
      const id = `dev_${randomBytes(16).toString("base64url")}`;
      return `${id}.${tag(required(), id).toString("base64url")}`;
    },
    verify(value) {
      const m = value ? DEVICE.exec(value) : null;
      const k = key();
      if (!m || !k) return null;
      const given = Buffer.from(m[2]!, "base64url");
      const want = tag(k, m[1]!);
      return given.length === want.length && timingSafeEqual(given, want) ? m[1]! : null;
    },
  };
}
