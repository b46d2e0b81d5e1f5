import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  arrayReader,
  consistencyProof,
  EMPTY_ROOT,
  type Hash,
  IncrementalTree,
  inclusionProof,
  leafHash,
  leafHashHex,
  nodeHash,
  rootOf,
  toHex,
  verifyConsistency,
  verifyInclusion,
} from "./merkle.ts";

// The RFC 6962 reference data (certificate-transparency's merkle tree tests, reused by RFC 9162
// implementations): eight leaves, the root of every prefix, and some published proofs.
const VECTOR_LEAVES = [
  "",
  "00",
  "10",
  "2021",
  "3031",
  "40414243",
  "5051525354555657",
  "606162636465666768696a6b6c6d6e6f",
].map((h) => leafHash(Buffer.from(h, "hex")));
const VECTOR_ROOTS = [
  "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
  "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
  "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
  "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
  "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
  "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
  "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
  "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];
const VECTOR_INCLUSION: [number, number, string[]][] = [
  [0, 1, []],
  [
    0,
    8,
    [
      "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
  ],
  [
    5,
    8,
    [
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
  ],
];
const VECTOR_CONSISTENCY: [number, number, string[]][] = [
  [1, 1, []],
  [
    1,
    8,
    [
      "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ],
  ],
  [
    6,
    8,
    [
      "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ],
  ],
  [
    2,
    5,
    [
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ],
  ],
];

const hex = (hs: readonly Hash[]) => hs.map(toHex);
const unhex = (hs: readonly string[]) => hs.map((h) => new Uint8Array(Buffer.from(h, "hex")));

/** The RFC's recursive definition, verbatim, as an independent reference. */
function mth(leaves: readonly Hash[]): Hash {
  if (leaves.length === 0) return EMPTY_ROOT;
  if (leaves.length === 1) return leaves[0] as Hash;
  let k = 1;
  while (k * 2 < leaves.length) k *= 2;
  return nodeHash(mth(leaves.slice(0, k)), mth(leaves.slice(k)));
}

const leavesOf = (n: number): Hash[] => Array.from({ length: n }, (_, i) => leafHash(`event ${i}`));

function flipped(proof: readonly Hash[], at: number, bit: number): Hash[] {
  return proof.map((h, i) => {
    if (i !== at) return h;
    const c = new Uint8Array(h);
    c[bit >> 3] = (c[bit >> 3] as number) ^ (1 << (bit & 7));
    return c;
  });
}

describe("RFC 6962 / 9162 hashing", () => {
  it("hashes the empty tree to SHA-256 of nothing, leaves and nodes with their prefixes", () => {
    expect(toHex(EMPTY_ROOT)).toBe(createHash("sha256").digest("hex"));
    expect(toHex(rootOf([]))).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    expect(toHex(leafHash(new Uint8Array()))).toBe(
      "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    );
    const [a, b] = unhex(["00".repeat(32), "11".repeat(32)]) as [Hash, Hash];
    expect(toHex(nodeHash(a, b))).toBe(
      createHash("sha256")
        .update(Buffer.concat([Buffer.of(1), a, b]))
        .digest("hex"),
    );
  });

  it("hashes a string leaf in hex in one call exactly as leafHash does its UTF-8 bytes", () => {
    for (const leaf of ["", "a", '{"seq":1,"type":"link.issued"}', "Zoë 👋 \u0000 \n", "x".repeat(5000)]) {
      expect(leafHashHex(leaf)).toBe(toHex(leafHash(leaf)));
    }
    fc.assert(fc.property(fc.string({ unit: "grapheme" }), (s) => leafHashHex(s) === toHex(leafHash(s))));
  });

  it("gives the reference root of every prefix of the test leaves, incrementally and at once", () => {
    const t = new IncrementalTree();
    VECTOR_LEAVES.forEach((h, i) => {
      t.appendLeafHash(h);
      expect(t.size).toBe(i + 1);
      expect(toHex(t.root())).toBe(VECTOR_ROOTS[i]);
      expect(toHex(rootOf(VECTOR_LEAVES.slice(0, i + 1)))).toBe(VECTOR_ROOTS[i]);
    });
  });

  it("generates and verifies the reference inclusion proofs", async () => {
    for (const [index, size, path] of VECTOR_INCLUSION) {
      const proof = await inclusionProof(arrayReader(VECTOR_LEAVES), index, size);
      expect(hex(proof)).toEqual(path);
      const root = unhex([VECTOR_ROOTS[size - 1] as string])[0] as Hash;
      expect(verifyInclusion(index, size, VECTOR_LEAVES[index] as Hash, unhex(path), root)).toBe(true);
    }
  });

  it("generates and verifies the reference consistency proofs", async () => {
    for (const [oldSize, newSize, path] of VECTOR_CONSISTENCY) {
      const proof = await consistencyProof(arrayReader(VECTOR_LEAVES), oldSize, newSize);
      expect(hex(proof)).toEqual(path);
      const [oldRoot, newRoot] = unhex([
        VECTOR_ROOTS[oldSize - 1] as string,
        VECTOR_ROOTS[newSize - 1] as string,
      ]) as [Hash, Hash];
      expect(verifyConsistency(oldSize, newSize, oldRoot, newRoot, unhex(path))).toBe(true);
    }
  });

  it("matches the RFC's recursive MTH for every size up to 70", () => {
    const leaves = leavesOf(70);
    const t = new IncrementalTree();
    for (let n = 0; n <= 70; n++) {
      expect(toHex(t.root())).toBe(toHex(mth(leaves.slice(0, n))));
      if (n < 70) t.appendLeafHash(leaves[n] as Hash);
    }
  });

  it("rejects nonsense inputs instead of throwing", () => {
    const leaves = leavesOf(4);
    const root = rootOf(leaves);
    expect(verifyInclusion(4, 4, leaves[0] as Hash, [], root)).toBe(false);
    expect(verifyInclusion(-1, 4, leaves[0] as Hash, [], root)).toBe(false);
    expect(verifyInclusion(0, 1, leaves[0] as Hash, [], new Uint8Array(31))).toBe(false);
    expect(verifyConsistency(5, 4, root, root, [])).toBe(false);
    expect(verifyConsistency(4, 4, root, root, [root])).toBe(false);
    expect(verifyConsistency(0, 4, EMPTY_ROOT, root, [])).toBe(true);
    expect(verifyConsistency(0, 4, EMPTY_ROOT, root, [root])).toBe(false);
    expect(verifyConsistency(2, 4, rootOf(leaves.slice(0, 2)), root, [])).toBe(false);
  });
});

describe("proof properties (fast-check)", () => {
  const ALL = leavesOf(300);
  const read = arrayReader(ALL);
  const roots = (() => {
    const t = new IncrementalTree();
    const out: Hash[] = [t.root()];
    for (const h of ALL) {
      t.appendLeafHash(h);
      out.push(t.root());
    }
    return out;
  })();
  const sizeAndIndex = fc.integer({ min: 1, max: 300 }).chain((n) => fc.tuple(fc.constant(n), fc.nat(n - 1)));
  const sizes = fc.integer({ min: 1, max: 300 }).chain((n) => fc.tuple(fc.nat(n), fc.constant(n)));

  it("inclusion proofs verify, and fail for a flipped bit, another leaf, index or size", async () => {
    await fc.assert(
      fc.asyncProperty(sizeAndIndex, fc.nat(), fc.nat(255), async ([n, m], pick, bit) => {
        const proof = await inclusionProof(read, m, n);
        const leaf = ALL[m] as Hash;
        const root = roots[n] as Hash;
        expect(verifyInclusion(m, n, leaf, proof, root)).toBe(true);
        if (proof.length > 0) {
          expect(verifyInclusion(m, n, leaf, flipped(proof, pick % proof.length, bit), root)).toBe(false);
        }
        expect(verifyInclusion(m, n, flipped([leaf], 0, bit)[0] as Hash, proof, root)).toBe(false);
        expect(verifyInclusion(m, n, leaf, proof, flipped([root], 0, bit)[0] as Hash)).toBe(false);
        if (n > 1) expect(verifyInclusion((m + 1) % n, n, leaf, proof, root)).toBe(false);
        // The size is bound through the root: the next tree's root with this proof fails.
        if (n < 300) expect(verifyInclusion(m, n + 1, leaf, proof, roots[n + 1] as Hash)).toBe(false);
        if (proof.length > 0) expect(verifyInclusion(m, n, leaf, proof.slice(0, -1), root)).toBe(false);
        expect(verifyInclusion(m, n, leaf, [...proof, leaf], root)).toBe(false);
      }),
      { numRuns: 300 },
    );
  });

  it("consistency proofs verify, and fail for a flipped bit, another size or root", async () => {
    await fc.assert(
      fc.asyncProperty(sizes, fc.nat(), fc.nat(255), async ([m, n], pick, bit) => {
        const proof = await consistencyProof(read, m, n);
        const oldRoot = roots[m] as Hash;
        const newRoot = roots[n] as Hash;
        expect(verifyConsistency(m, n, oldRoot, newRoot, proof)).toBe(true);
        if (m === 0) return;
        if (proof.length > 0) {
          expect(verifyConsistency(m, n, oldRoot, newRoot, flipped(proof, pick % proof.length, bit))).toBe(
            false,
          );
        }
        expect(verifyConsistency(m, n, flipped([oldRoot], 0, bit)[0] as Hash, newRoot, proof)).toBe(false);
        expect(verifyConsistency(m, n, oldRoot, flipped([newRoot], 0, bit)[0] as Hash, proof)).toBe(false);
        if (m < n) {
          // A neighbouring old size with its true root still fails against this proof.
          const other = m + 1 <= n && m + 1 !== m ? m + 1 : m - 1;
          if (other >= 1 && other !== m && other < n) {
            expect(verifyConsistency(other, n, roots[other] as Hash, newRoot, proof)).toBe(false);
          }
          expect(verifyConsistency(m, n, oldRoot, newRoot, proof.slice(0, -1))).toBe(false);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("the incremental root agrees with proofs over stored hashes read asynchronously", async () => {
    const asyncRead = async (s: number, e: number) => ALL.slice(s, e);
    await fc.assert(
      fc.asyncProperty(sizeAndIndex, async ([n, m]) => {
        const proof = await inclusionProof(asyncRead, m, n);
        expect(verifyInclusion(m, n, ALL[m] as Hash, proof, roots[n] as Hash)).toBe(true);
      }),
      { numRuns: 50 },
    );
  });
});
