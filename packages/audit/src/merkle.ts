import { createHash, hash } from "node:crypto";

// RFC 9162 §2.1 Merkle tree hashing (identical to RFC 6962 §2.1 with SHA-256). Every hash is a
// 32-byte Uint8Array; hex and base64 are for the edges (CLI, notes, JSON).

export type Hash = Uint8Array;

export const HASH_SIZE = 32;

const sha256 = (...parts: Uint8Array[]): Hash => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};

const LEAF_PREFIX = Uint8Array.of(0x00);
const NODE_PREFIX = Uint8Array.of(0x01);

/** MTH({}) = SHA-256() (RFC 9162 §2.1.1). */
export const EMPTY_ROOT: Hash = sha256();

/** MTH({d}) = SHA-256(0x00 || d): the prefix keeps a leaf from ever posing as an interior node. */
export function leafHash(leaf: Uint8Array | string): Hash {
  return sha256(LEAF_PREFIX, typeof leaf === "string" ? Buffer.from(leaf, "utf8") : leaf);
}

/**
 * {@link leafHash} of a string, in hex, in one call: "\u0000" encodes as the byte 0x00 in UTF-8,
 * so the hashed bytes are the same. For the store, which hashes every event it appends.
 */
export const leafHashHex = (leaf: string): string => hash("sha256", `\u0000${leaf}`, "hex");

/** SHA-256(0x01 || left || right). */
export function nodeHash(left: Hash, right: Hash): Hash {
  return sha256(NODE_PREFIX, left, right);
}

export const equalHash = (a: Uint8Array, b: Uint8Array): boolean =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.length).equals(b);

export const toHex = (h: Uint8Array): string => Buffer.from(h).toString("hex");
export const toBase64 = (h: Uint8Array): string => Buffer.from(h).toString("base64");
export const fromBase64 = (s: string): Hash => new Uint8Array(Buffer.from(s, "base64"));

/** The largest power of two strictly below `n` (n ≥ 2): the RFC's split point `k`. */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/**
 * A Merkle tree built leaf by leaf in O(log n) memory: the roots of the perfect subtrees that
 * cover the leaves so far, largest first (the "frontier" or compact range [0, size)). This is how
 * a verifier walks a million-event export in one pass without holding the events.
 */
export class IncrementalTree {
  readonly #hashes: Hash[] = [];
  readonly #sizes: number[] = [];
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /**
   * Resumes a tree from its frontier: the roots of the perfect subtrees covering `size` leaves,
   * largest first (one per set bit of `size`), as {@link frontier} returned them.
   */
  static fromFrontier(size: number, hashes: readonly Hash[]): IncrementalTree {
    checkSize("size", size);
    const sizes: number[] = [];
    for (let bit = 2 ** Math.floor(Math.log2(Math.max(size, 1))); bit >= 1; bit /= 2) {
      if (Math.floor(size / bit) % 2 === 1) sizes.push(bit);
    }
    if (size === 0) sizes.length = 0;
    if (sizes.length !== hashes.length || !hashes.every(isHash)) {
      throw new RangeError(`a frontier of ${size} leaves has ${sizes.length} hashes`);
    }
    const t = new IncrementalTree();
    t.#hashes.push(...hashes);
    t.#sizes.push(...sizes);
    t.#size = size;
    return t;
  }

  /** The roots of the perfect subtrees covering the leaves so far, largest first. */
  frontier(): Hash[] {
    return [...this.#hashes];
  }

  /** Appends a leaf by its leaf hash (see {@link leafHash}). */
  appendLeafHash(h: Hash): void {
    let hash = h;
    let size = 1;
    // Two perfect subtrees of equal size side by side are one perfect subtree twice as big.
    while (this.#sizes.length > 0 && this.#sizes.at(-1) === size) {
      hash = nodeHash(this.#hashes.pop() as Hash, hash);
      size += this.#sizes.pop() as number;
    }
    this.#hashes.push(hash);
    this.#sizes.push(size);
    this.#size++;
  }

  /**
   * MTH of the leaves so far. Folding the frontier from the right reproduces the RFC's recursion:
   * each split point k is exactly where a larger perfect subtree ends.
   */
  root(): Hash {
    if (this.#hashes.length === 0) return EMPTY_ROOT;
    let acc = this.#hashes.at(-1) as Hash;
    for (let i = this.#hashes.length - 2; i >= 0; i--) acc = nodeHash(this.#hashes[i] as Hash, acc);
    return acc;
  }
}

/** Root of leaf hashes given as an array. */
export function rootOf(leafHashes: readonly Hash[]): Hash {
  const t = new IncrementalTree();
  for (const h of leafHashes) t.appendLeafHash(h);
  return t.root();
}

/**
 * Reads leaf hashes `[start, end)` in order. An array in memory, or a page of stored hashes:
 * proofs only ever ask for contiguous ranges, each leaf at most once per proof.
 */
export type LeafHashReader = (start: number, end: number) => readonly Hash[] | Promise<readonly Hash[]>;

/** A reader over an in-memory array of leaf hashes. */
export const arrayReader =
  (leafHashes: readonly Hash[]): LeafHashReader =>
  (start, end) =>
    leafHashes.slice(start, end);

const READ_CHUNK = 4_096;

/** MTH(D[start:end]) from a reader, streaming in chunks so a huge range stays O(log n) in memory. */
export async function rangeRoot(read: LeafHashReader, start: number, end: number): Promise<Hash> {
  const t = new IncrementalTree();
  for (let from = start; from < end; from += READ_CHUNK) {
    const to = Math.min(end, from + READ_CHUNK);
    const chunk = await read(from, to);
    if (chunk.length !== to - from)
      throw new RangeError(`leaf reader returned ${chunk.length} of ${to - from}`);
    for (const h of chunk) t.appendLeafHash(h);
  }
  return t.root();
}

function checkSize(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer`);
}

/** A half-open range of leaf indexes `[start, end)` whose MTH is one element of a proof. */
export type LeafRange = readonly [start: number, end: number];

/**
 * The leaf ranges whose roots make up the audit path of leaf `index` in the tree of the first
 * `size` leaves, leaf side first (RFC 9162 §2.1.3.1: PATH(m, D[n])). The ranges are disjoint, so
 * a verifier can fill them all in one pass over the leaves.
 */
export function inclusionProofRanges(index: number, size: number): LeafRange[] {
  checkSize("index", index);
  checkSize("size", size);
  if (index >= size) throw new RangeError("index must be below size");
  const ranges: LeafRange[] = [];
  // PATH(m, D[lo:hi]) = PATH(m', child holding m) : MTH(sibling); the recursion as a loop, root
  // side first, reversed at the end.
  let lo = 0;
  let hi = size;
  while (hi - lo > 1) {
    const k = splitPoint(hi - lo);
    if (index < lo + k) {
      ranges.push([lo + k, hi]);
      hi = lo + k;
    } else {
      ranges.push([lo, lo + k]);
      lo += k;
    }
  }
  return ranges.reverse();
}

/**
 * The leaf ranges whose roots make up the consistency proof between the trees of the first
 * `oldSize` and `newSize` leaves (RFC 9162 §2.1.4.1: PROOF(m, D[n]) = SUBPROOF(m, D[n], true)),
 * disjoint, in proof order. None when oldSize is 0 or equals newSize.
 */
export function consistencyProofRanges(oldSize: number, newSize: number): LeafRange[] {
  checkSize("oldSize", oldSize);
  checkSize("newSize", newSize);
  if (oldSize > newSize) throw new RangeError("oldSize must not exceed newSize");
  if (oldSize === 0 || oldSize === newSize) return [];
  const ranges: LeafRange[] = [];
  let m = oldSize;
  let lo = 0;
  let hi = newSize;
  let complete = true;
  // SUBPROOF(m, D[lo:hi], b), root side first; reversed at the end.
  while (m !== hi - lo) {
    const k = splitPoint(hi - lo);
    if (m <= k) {
      ranges.push([lo + k, hi]);
      hi = lo + k;
    } else {
      ranges.push([lo, lo + k]);
      lo += k;
      m -= k;
      complete = false;
    }
  }
  // SUBPROOF(m, D[m], true) = {} (the verifier has that root); with b false it is {MTH(D[m])}.
  if (!complete) ranges.push([lo, hi]);
  return ranges.reverse();
}

const rangeRoots = async (read: LeafHashReader, ranges: readonly LeafRange[]): Promise<Hash[]> => {
  const out: Hash[] = [];
  for (const [start, end] of ranges) out.push(await rangeRoot(read, start, end));
  return out;
};

/** The audit path of leaf `index` in the tree of the first `size` leaves. */
export const inclusionProof = (read: LeafHashReader, index: number, size: number): Promise<Hash[]> =>
  rangeRoots(read, inclusionProofRanges(index, size));

/** The consistency proof from the tree of the first `oldSize` leaves to that of the first `newSize`. */
export const consistencyProof = (read: LeafHashReader, oldSize: number, newSize: number): Promise<Hash[]> =>
  rangeRoots(read, consistencyProofRanges(oldSize, newSize));

const isHash = (h: unknown): h is Hash => h instanceof Uint8Array && h.length === HASH_SIZE;

/** RFC 9162 §2.1.3.2, step for step. True only when `leaf` (a leaf hash) is at `index` under `root`. */
export function verifyInclusion(
  index: number,
  size: number,
  leaf: Hash,
  proof: readonly Hash[],
  root: Hash,
): boolean {
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(size) || index < 0) return false;
  if (!isHash(leaf) || !isHash(root) || !proof.every(isHash)) return false;
  if (index >= size) return false;
  // Sizes up to 2^53 do not fit 32-bit shifts: BigInt keeps the bit arithmetic exact.
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      r = nodeHash(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && equalHash(r, root);
}

/**
 * RFC 9162 §2.1.4.2, step for step, for 0 < oldSize < newSize; oldSize 0 is consistent with
 * anything (the empty proof) and equal sizes need equal roots and an empty proof.
 */
export function verifyConsistency(
  oldSize: number,
  newSize: number,
  oldRoot: Hash,
  newRoot: Hash,
  proof: readonly Hash[],
): boolean {
  if (!Number.isSafeInteger(oldSize) || !Number.isSafeInteger(newSize) || oldSize < 0) return false;
  if (!isHash(oldRoot) || !isHash(newRoot) || !proof.every(isHash)) return false;
  if (oldSize > newSize) return false;
  if (oldSize === 0) return proof.length === 0;
  if (oldSize === newSize) return proof.length === 0 && equalHash(oldRoot, newRoot);
  if (proof.length === 0) return false;
  const path = [...proof];
  // A power-of-two old tree is itself a node of the new one: the proof leaves it out.
  if ((oldSize & (oldSize - 1)) === 0) path.unshift(oldRoot);
  let fn = BigInt(oldSize) - 1n;
  let sn = BigInt(newSize) - 1n;
  while ((fn & 1n) === 1n) {
    fn >>= 1n;
    sn >>= 1n;
  }
  let fr = path[0] as Hash;
  let sr = path[0] as Hash;
  for (const c of path.slice(1)) {
    if (sn === 0n) return false;
    if ((fn & 1n) === 1n || fn === sn) {
      fr = nodeHash(c, fr);
      sr = nodeHash(c, sr);
      while ((fn & 1n) === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      sr = nodeHash(sr, c);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return equalHash(fr, oldRoot) && equalHash(sr, newRoot) && sn === 0n;
}
