import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  exportPKCS8,
  generateKeyPair,
  importJWK,
  importPKCS8,
  type JWK,
} from "jose";
import { z } from "zod";
import { TOKEN_ALG } from "./constants.ts";
import { TokenKeyError } from "./errors.ts";

/** A public Ed25519 key as published at `GET /.well-known/jwks.json`. */
export interface PublicJwk {
  kty: "OKP";
  crv: "Ed25519";
  x: string;
  kid: string;
  alg: "EdDSA";
  use: "sig";
}

/** The private half of a signing key, ready for {@link signLink}. */
export interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
}

export interface GeneratedSigningKey extends SigningKey {
  publicJwk: PublicJwk;
  /** PEM PKCS#8; encrypt it with {@link encryptPrivateKey} before storing. */
  privatePkcs8: string;
}

/** A fresh Ed25519 key pair; `kid` is the RFC 7638 thumbprint of its public key. */
export async function generateSigningKey(): Promise<GeneratedSigningKey> {
  const pair = await generateKeyPair(TOKEN_ALG, { crv: "Ed25519", extractable: true });
  const { kty, crv, x } = await exportJWK(pair.publicKey);
  const kid = await calculateJwkThumbprint({ kty, crv, x });
  const publicJwk = toPublicJwk(kid, { kty, crv, x });
  const privatePkcs8 = await exportPKCS8(pair.privateKey);
  // Re-import so the key the process keeps signing with cannot be exported again.
  return { ...(await importSigningKey(kid, privatePkcs8)), publicJwk, privatePkcs8 };
}

/** A stored (decrypted) PKCS#8 private key, imported as a non-extractable signing key. */
export async function importSigningKey(kid: string, privatePkcs8: string): Promise<SigningKey> {
  try {
    return { kid, privateKey: await importPKCS8(privatePkcs8, TOKEN_ALG, { extractable: false }) };
  } catch (cause) {
    throw new TokenKeyError("jwk_invalid", `signing key ${kid} is not an Ed25519 PKCS#8 key`, { cause });
  }
}

const ED25519_X = /^[A-Za-z0-9_-]{43}$/;
const publicJwkInput = z
  .object({
    kty: z.literal("OKP"),
    crv: z.literal("Ed25519"),
    x: z.string().regex(ED25519_X),
    kid: z.string().min(1).optional(),
    alg: z.literal(TOKEN_ALG).optional(),
    use: z.literal("sig").optional(),
  })
  .loose();

function toPublicJwk(kid: string, jwk: unknown): PublicJwk {
  const r = publicJwkInput.safeParse(jwk);
  if (!r.success) throw new TokenKeyError("jwk_invalid", `key ${kid} is not a public Ed25519 JWK`);
  // A private key must never reach a verifier's ring, nor be re-published from it.
  if ("d" in r.data) throw new TokenKeyError("jwk_invalid", `key ${kid} contains private key material`);
  if (r.data.kid !== undefined && r.data.kid !== kid) {
    throw new TokenKeyError("jwk_invalid", `key ${kid} carries a different kid`);
  }
  return { kty: "OKP", crv: "Ed25519", x: r.data.x, kid, alg: TOKEN_ALG, use: "sig" };
}

interface RingEntry {
  jwk: PublicJwk;
  key: CryptoKey;
}

/**
 * The public keys a verifier trusts, by `kid`. Each key is imported into a `CryptoKey` once, when
 * added; the verifier looks keys up only here, never from a token's header.
 */
export class KeyRing {
  #entries = new Map<string, RingEntry>();

  /** A ring holding `jwks`. */
  static async from(jwks: { keys: readonly unknown[] }): Promise<KeyRing> {
    const ring = new KeyRing();
    await ring.set(jwks);
    return ring;
  }

  /**
   * Replaces every key with those of a JWKS-shaped `{ keys }` (each needs a `kid`). All-or-nothing:
   * on an invalid key the ring is left as it was. Keys already held are not imported again.
   */
  async set(jwks: { keys: readonly unknown[] }): Promise<void> {
    const next = new Map<string, RingEntry>();
    for (const raw of jwks.keys) {
      const kid = (raw as { kid?: unknown } | null)?.kid;
      if (typeof kid !== "string" || kid.length === 0)
        throw new TokenKeyError("jwk_invalid", "a key has no kid");
      if (next.has(kid)) throw new TokenKeyError("jwk_invalid", `duplicate kid ${kid}`);
      next.set(kid, await this.#entry(kid, raw));
    }
    this.#entries = next;
  }

  /** Adds (or replaces) one public key. */
  async add(kid: string, jwk: unknown): Promise<void> {
    if (kid.length === 0) throw new TokenKeyError("jwk_invalid", "a key needs a kid");
    this.#entries.set(kid, await this.#entry(kid, jwk));
  }

  /** Stops trusting a key at once. */
  remove(kid: string): boolean {
    return this.#entries.delete(kid);
  }

  /** The imported key for `kid`, or undefined for an unknown kid. */
  get(kid: string): CryptoKey | undefined {
    return this.#entries.get(kid)?.key;
  }

  has(kid: string): boolean {
    return this.#entries.has(kid);
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The public JWKs held, in insertion order. */
  jwks(): PublicJwk[] {
    return [...this.#entries.values()].map((e) => ({ ...e.jwk }));
  }

  async #entry(kid: string, raw: unknown): Promise<RingEntry> {
    const jwk = toPublicJwk(kid, raw);
    const held = this.#entries.get(kid);
    if (held && held.jwk.x === jwk.x) return held;
    try {
      const key = await importJWK<JWK>({ kty: jwk.kty, crv: jwk.crv, x: jwk.x }, TOKEN_ALG);
      if (key instanceof Uint8Array) throw new Error("imported a secret, not a public key");
      return { jwk, key };
    } catch (cause) {
      throw new TokenKeyError("jwk_invalid", `key ${kid} could not be imported`, { cause });
    }
  }
}

/** The body of `GET /.well-known/jwks.json` for a ring. */
export const publicJwks = (ring: KeyRing): { keys: PublicJwk[] } => ({ keys: ring.jwks() });
