import { type ChainEvent, canonicalEvent } from "./chain.ts";
import { type Hash, leafHash } from "./merkle.ts";

// A tree leaf is one event's canonical form (chain.ts `canonicalEvent`) as UTF-8: the same bytes
// the hash chain covers, so the exporter, the verifier and the writer share one encoding and the
// export line already proves it (it must re-encode byte for byte). It holds seq and id, so a
// leaf's position is bound into it; it leaves out prevHash and hash, so the tree commits to the
// events themselves, not to a chain an attacker can recompute.

/** The leaf bytes of a stored (or exported) event. */
export const eventLeaf = (e: ChainEvent): Uint8Array => Buffer.from(canonicalEvent(e), "utf8");

/** SHA-256(0x00 || leaf) of a stored event. */
export const eventLeafHash = (e: ChainEvent): Hash => leafHash(eventLeaf(e));

// The writer hashes the same bytes without a round trip: store.ts `appendInTransaction` computes
// `leafHash(canonicalPrepared(event, seq, id))` beside the chain hash, from one string.
