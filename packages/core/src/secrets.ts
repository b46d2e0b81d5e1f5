import { createHash, createHmac, hash, randomBytes, timingSafeEqual } from "node:crypto";

/** Constant-time comparison of two secrets of any length (hashes first so lengths never leak). */
export function safeEqual(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}

// One-shot `hash`: no Hash object per call (a 10,000-link batch hashes 10,000 short-link codes).
export const sha256Hex = (data: string | Uint8Array): string => hash("sha256", data, "hex");

export const hmacHex = (key: string | Uint8Array, data: string): string =>
  createHmac("sha256", key).update(data).digest("hex");

// Ids are made on hot paths (an audit event per request): draw them from a pooled buffer of CSPRNG
// bytes rather than pay a randomBytes() call each (about 20x cheaper). Each byte is used once.
const POOL_SIZE = 4096;
let pool = randomBytes(POOL_SIZE);
let offset = 0;

/** URL-safe random id with the given prefix, e.g. `lnk_3fj…`. */
export function randomId(prefix: string, bytes = 16): string {
  return `${prefix}_${randomBase64url(bytes)}`;
}

/** `bytes` random bytes as base64url, from the pool: 16 bytes give a 22-character short link code. */
export function randomBase64url(bytes = 16): string {
  if (bytes > POOL_SIZE) return randomBytes(bytes).toString("base64url");
  if (offset + bytes > POOL_SIZE) {
    pool = randomBytes(POOL_SIZE);
    offset = 0;
  }
  const id = pool.toString("base64url", offset, offset + bytes);
  offset += bytes;
  return id;
}

/**
 * The shared secret the gateway presents to the demo phone bank in development. Production sets
 * PHONEBANK_SECRET on both sides, and the phone bank refuses this value there.
 */
export const DEV_PHONEBANK_SECRET = "phaselock-dev-phonebank-secret-change-me";
