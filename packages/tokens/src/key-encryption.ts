import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { TokenKeyError } from "./errors.ts";

const VERSION = "v1";
const IV_BYTES = 12;
const TAG_BYTES = 16;
// Binds the ciphertext to its purpose and format version, so a blob cannot be replayed elsewhere.
const AAD = Buffer.from("phaselock:signing-key:v1");

function checkKek(kek: Uint8Array): void {
  if (kek.byteLength !== 32)
    throw new TokenKeyError("kek_invalid", "the key encryption key must be 32 bytes");
}

/** Encrypts a PKCS#8 private key for storage: `v1.<iv>.<tag>.<ciphertext>`, base64url, AES-256-GCM. */
export function encryptPrivateKey(pkcs8: string, kek: Uint8Array): string {
  checkKek(kek);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", kek, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(AAD);
  const ct = Buffer.concat([cipher.update(pkcs8, "utf8"), cipher.final()]);
  const tag = cipher.getAuthTag();
  return [VERSION, iv, tag, ct].map((p) => (typeof p === "string" ? p : p.toString("base64url"))).join(".");
}

const B64URL = /^[A-Za-z0-9_-]+$/;

/**
 * Reverses {@link encryptPrivateKey}. Throws {@link TokenKeyError} `key_decryption_failed` for a
 * wrong key or a tampered blob (GCM cannot tell them apart) and `key_blob_malformed` for anything
 * that is not a v1 blob.
 */
export function decryptPrivateKey(blob: string, kek: Uint8Array): string {
  checkKek(kek);
  const parts = blob.split(".");
  if (parts.length !== 4 || parts[0] !== VERSION || !parts.slice(1).every((p) => B64URL.test(p))) {
    throw new TokenKeyError("key_blob_malformed", "the encrypted signing key is not a v1 blob");
  }
  const [, iv, tag, ct] = parts.map((p) => Buffer.from(p, "base64url")) as [Buffer, Buffer, Buffer, Buffer];
  if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) {
    throw new TokenKeyError("key_blob_malformed", "the encrypted signing key has a bad iv or tag length");
  }
  try {
    const decipher = createDecipheriv("aes-256-gcm", kek, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(AAD);
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(ct), decipher.final()]).toString("utf8");
  } catch (cause) {
    throw new TokenKeyError(
      "key_decryption_failed",
      "could not decrypt the signing key: wrong KEY_ENCRYPTION_KEY, or the stored key was altered",
      { cause },
    );
  }
}

/**
 * Parses a key encryption key from configuration: 64 hex characters, or 32 bytes in base64 or
 * base64url (43 or 44 characters). Surrounding whitespace is ignored.
 */
export function parseKek(value: string): Uint8Array {
  const s = value.trim();
  if (/^[0-9a-fA-F]{64}$/.test(s)) return new Uint8Array(Buffer.from(s, "hex"));
  if (/^[A-Za-z0-9+/_-]{43}=?$/.test(s)) {
    const bytes = Buffer.from(s.replace(/\+/g, "-").replace(/\//g, "_").replace(/=$/, ""), "base64url");
    if (bytes.length === 32) return new Uint8Array(bytes);
  }
  throw new TokenKeyError(
    "kek_invalid",
    "KEY_ENCRYPTION_KEY must be 32 bytes: 64 hex characters, or 43/44 base64(url) characters",
  );
}
