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
interface Slot {
  entry: VerifiedEntry;
  /** insertion sequence number: how young the slot is */
  seq: number;
}

export class VerifyCache {
  readonly maxEntries: number;
  readonly #map = new Map<string, Slot>();
  #seq = 0;
  /** Lookups answered / not answered since construction (the gateway's hit-ratio metric). */
  hits = 0;
  misses = 0;

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
    const slot = this.#map.get(key);
    if (!slot) {
      this.misses++;
      return undefined;
    }
    if (slot.entry.claims.exp <= nowSeconds) {
      this.#map.delete(key);
      this.misses++;
      return undefined;
    }
    this.hits++;
    // Only an entry in the older half moves to the young end. Re-inserting on every hit made one
    // busy token cost more than a signature check (a Map keeps deleted entries until it rehashes).
    if (this.#seq - slot.seq >= this.maxEntries / 2) {
      this.#map.delete(key);
      slot.seq = ++this.#seq;
      this.#map.set(key, slot);
    }
    return slot.entry;
  }

  set(key: string, entry: VerifiedEntry): void {
    this.#map.delete(key);
    this.#map.set(key, { entry, seq: ++this.#seq });
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
