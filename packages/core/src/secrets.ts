import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";

/** Constant-time comparison of two secrets of any length (hashes first so lengths never leak). */
export function safeEqual(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}

export const sha256Hex = (data: string | Uint8Array): string =>
  createHash("sha256").update(data).digest("hex");

export const hmacHex = (key: string | Uint8Array, data: string): string =>
  createHmac("sha256", key).update(data).digest("hex");

/** URL-safe random id with the given prefix, e.g. `lnk_3fj…`. */
export function randomId(prefix: string, bytes = 16): string {
  return `${prefix}_${randomBytes(bytes).toString("base64url")}`;
}

/**
 * The shared secret the gateway presents to the demo phone bank in development. Production sets
 * PHONEBANK_SECRET on both sides, and the phone bank refuses this value there.
 */
export const DEV_PHONEBANK_SECRET = "phaselock-dev-phonebank-secret-change-me";
