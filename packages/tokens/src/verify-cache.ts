import type { LinkClaims } from "@phaselock/policy";

/** What the verifier remembers about a token whose signature it has checked. */
export interface VerifiedEntry {
  claims: LinkClaims;
  /** The signing key, so a key dropped from the ring stops cached tokens too. */
  kid: string;
}

/**
 * Bounded LRU of verified tokens, keyed by the token's SHA-256 (the token itself is never kept).
 * Saves the signature check on repeat requests; time is always re-checked by the verifier, and an
 * entry is dropped once its `exp` has passed. Revocation, phase and scope are never cached.
 * Belongs to one verifier: the key implies that verifier's issuer and audience.
 */
export class VerifyCache {
  readonly maxEntries: number;
  readonly #map = new Map<string, VerifiedEntry>();

  constructor(opts: { maxEntries?: number } = {}) {
    this.maxEntries = opts.maxEntries ?? 100_000;
    if (!Number.isInteger(this.maxEntries) || this.maxEntries < 1) {
      throw new RangeError("VerifyCache maxEntries must be a positive integer");
    }
  }

  get size(): number {
    return this.#map.size;
  }

  /** The entry for `key`, unless absent or expired at `nowSeconds` (an expired one is evicted). */
  get(key: string, nowSeconds: number): VerifiedEntry | undefined {
    const entry = this.#map.get(key);
    if (!entry) return undefined;
    this.#map.delete(key);
    if (entry.claims.exp <= nowSeconds) return undefined;
    // Re-inserting moves the entry to the young end of the Map's insertion order.
    this.#map.set(key, entry);
    return entry;
  }

  set(key: string, entry: VerifiedEntry): void {
    this.#map.delete(key);
    this.#map.set(key, entry);
    while (this.#map.size > this.maxEntries) {
      const oldest = this.#map.keys().next();
      if (oldest.done) break;
      this.#map.delete(oldest.value);
    }
  }

  clear(): void {
    this.#map.clear();
  }
}
