import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GENESIS, type StoredEvent } from "../chain.ts";
import { exportLine, headerLine, trailerLine } from "../export-format.ts";
import { eventLeafHash } from "../leaf.ts";
import { IncrementalTree, rootOf, toBase64 } from "../merkle.ts";
import { type NoteSigner, signCheckpoint, verifierKeyString } from "../note.ts";
import { buildChain, rehash } from "../test-chain.ts";
import { runVerifyCli } from "./verify.ts";

const ORIGIN = "phaselock.test/audit";

/** Renumbers from seq 1 and recomputes every hash: what an attacker with the database can do. */
function rechain(events: readonly StoredEvent[]): StoredEvent[] {
  let prev = GENESIS;
  return events.map((e, i) => {
    const out = rehash({ ...e, seq: i + 1 }, prev);
    prev = out.hash;
    return out;
  });
}

const exportText = (events: readonly StoredEvent[]): string =>
  `${[
    headerLine(events[0]?.seq ?? 1, events[0]?.prevHash ?? GENESIS),
    ...events.map(exportLine),
    trailerLine(events.length, events.at(-1)?.hash ?? GENESIS),
  ].join("\n")}\n`;

const checkpointOf = (events: readonly StoredEvent[], size: number, signer: NoteSigner): string =>
  signCheckpoint(
    { origin: ORIGIN, size, rootHash: rootOf(events.slice(0, size).map(eventLeafHash)) },
    signer,
  );

function newKey(name = ORIGIN) {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { signer: { name, privateKey }, vkey: verifierKeyString(name, publicKey) };
}

function collect(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on("data", (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString("utf8") };
}

describe("audit:verify-export against signed checkpoints", () => {
  const log = buildChain(40);
  const key = newKey();
  let dir: string;
  const env = () => ({ INIT_CWD: dir });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "phaselock-verify-"));
    await writeFile(join(dir, "cp-20.note"), checkpointOf(log, 20, key.signer));
    await writeFile(join(dir, "cp-30.note"), checkpointOf(log, 30, key.signer));
    await writeFile(join(dir, "cp-40.note"), checkpointOf(log, 40, key.signer));
    await writeFile(join(dir, "audit.vkey"), `${key.vkey}\n`);
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Runs the CLI on `events` written as an export; checkpoints are file names in `dir`. */
  async function run(events: readonly StoredEvent[] | string, ...args: string[]) {
    await writeFile(join(dir, "export.ndjson"), typeof events === "string" ? events : exportText(events));
    const out = collect();
    const err = collect();
    const code = await runVerifyCli(["export.ndjson", ...args], env(), {
      stdout: out.stream,
      stderr: err.stream,
    });
    return { code, out: out.text(), err: err.text() };
  }

  it("passes an untouched export, with the key as a string or as a file", async () => {
    const r = await run(log, "--key", key.vkey, "--checkpoint", "cp-40.note");
    expect(r).toMatchObject({ code: 0 });
    expect(r.out).toMatch(
      /^ok: 40 events, head [0-9a-f]{64}, tree root \S+\ncheckpoint cp-40.note: size 40 /,
    );
    expect((await run(log, "--key", "audit.vkey", "--checkpoint", "cp-40.note")).code).toBe(0);
  });

  it("names what is wrong with a mistyped key rather than a file it is not", async () => {
    const typo = `${key.vkey.slice(0, -2)}${key.vkey.at(-2) === "A" ? "B" : "A"}${key.vkey.at(-1)}`;
    const r = await run(log, "--key", typo, "--checkpoint", "cp-40.note");
    expect(r.code).not.toBe(0);
    expect(r.err).toContain("verifier key id does not match its key, and no file has that name");
    expect(r.err).not.toContain("ENOENT");
  });

  it("passes an export that extends beyond the checkpoint", async () => {
    expect((await run(log, "--key", key.vkey, "--checkpoint", "cp-20.note")).code).toBe(0);
  });

  it("proves an older checkpoint consistent with the newer one", async () => {
    const r = await run(log, "--key", key.vkey, "--checkpoint", "cp-40.note", "--checkpoint", "cp-20.note");
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/checkpoint cp-20.note: size 20 is consistent with size 40 \(\d-hash proof\)/);
    // The order of the options does not matter: the largest is the newest.
    const both = await run(
      log,
      "--key",
      key.vkey,
      "--checkpoint",
      "cp-20.note",
      "--checkpoint",
      "cp-30.note",
    );
    expect(both.code).toBe(0);
  });

  // Each attack below re-chains (renumbers and recomputes every hash), so the chain itself checks
  // out: only the signed root catches it.
  const attacks: [string, () => StoredEvent[]][] = [
    [
      "an edited event",
      () => rechain(log.map((e) => (e.seq === 7 ? { ...e, decision: "allow", reason: "ok" } : e))),
    ],
    ["a deleted event", () => rechain(log.filter((e) => e.seq !== 12))],
    ["two events swapped", () => rechain([...log.slice(0, 4), log[5]!, log[4]!, ...log.slice(6)])],
    [
      "an inserted event",
      () => rechain([...log.slice(0, 3), { ...log[3]!, id: "evt_forged" }, ...log.slice(3)]),
    ],
    ["the newest events removed, before the checkpoint", () => rechain(log.slice(0, 17))],
    [
      "an event with a changed id only",
      () => rechain(log.map((e) => (e.seq === 1 ? { ...e, id: "evt_other" } : e))),
    ],
  ];
  it.each(attacks)("fails %s before the checkpoint", async (_name, attack) => {
    const events = attack();
    expect((await run(events)).code).toBe(0); // the chain alone is fooled
    const r = await run(events, "--key", key.vkey, "--checkpoint", "cp-20.note");
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^broken: cp-20.note: /);
  });

  it("fails a truncated export with the count it has", async () => {
    const r = await run(log.slice(0, 15), "--key", key.vkey, "--checkpoint", "cp-20.note");
    expect(r).toMatchObject({
      code: 1,
      out: "broken: cp-20.note: covers 20 events, the export has only 15\n",
    });
  });

  it("fails an older checkpoint from another history, even when the newest matches", async () => {
    const forked = rechain(log.map((e) => (e.seq === 3 ? { ...e, reason: "forked" } : e)));
    await writeFile(join(dir, "fork-20.note"), checkpointOf(forked, 20, key.signer));
    const r = await run(log, "--key", key.vkey, "--checkpoint", "cp-40.note", "--checkpoint", "fork-20.note");
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^broken: fork-20.note: the export's first 20 events have root/);
  });

  it("fails a checkpoint signed by another key, or not signed at all", async () => {
    const other = newKey();
    await writeFile(join(dir, "other.note"), checkpointOf(log, 40, other.signer));
    const r = await run(log, "--key", key.vkey, "--checkpoint", "other.note");
    expect(r).toMatchObject({ code: 1 });
    expect(r.out).toMatch(
      /^broken: other.note: not a checkpoint signed by phaselock.test\/audit \(no_signature\)/,
    );
    await writeFile(join(dir, "bare.note"), `${ORIGIN}\n40\n${"A".repeat(43)}=\n`);
    expect((await run(log, "--key", key.vkey, "--checkpoint", "bare.note")).code).toBe(1);
  });

  it("does not verify a mid-chain export whose header names no frontier against a checkpoint: says why, not broken, exits 1", async () => {
    const r = await run(log.slice(5), "--key", key.vkey, "--checkpoint", "cp-20.note");
    // A full export that lost its first five events looks the same: a failure, never a pass.
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^not verified against the checkpoints: the export starts at seq 6, /);
    expect(r.out).toContain("only an export from the start of the log");
    expect(r.out).toContain("without --since");
    expect(r.out).toContain(`Its 35 events chain from seq 6 to head ${log.at(-1)!.hash}`);
    expect(r.out).toContain("nothing before seq 6 is verified");
    expect(r.out).not.toContain("broken");
    expect(r.out).not.toContain("not found altered");
  });

  describe("a --since export whose header names the tree before it (its frontier)", () => {
    /** The header's frontier: the tree of the `from - 1` events before the export. */
    const frontierOf = (events: readonly StoredEvent[]) => {
      const tree = new IncrementalTree();
      for (const e of events) tree.appendLeafHash(eventLeafHash(e));
      return tree.frontier().map(toBase64);
    };
    const sinceText = (from: number, events = log, frontier = frontierOf(events.slice(0, from - 1))) =>
      exportText(events.slice(from - 1)).replace(
        headerLine(from, events[from - 2]!.hash),
        headerLine(from, events[from - 2]!.hash, frontier),
      );

    it("verifies against every checkpoint at least as large as the events before it", async () => {
      await writeFile(join(dir, "cp-11.note"), checkpointOf(log, 11, key.signer));
      for (const from of [6, 12, 21]) {
        const r = await run(sinceText(from), "--key", key.vkey, "--checkpoint", "cp-20.note");
        expect([from, r.code]).toEqual([from, 0]);
        expect(r.out).toContain(`from seq ${from} (the tree of the ${from - 1} before them`);
        expect(r.out).toContain("checkpoint cp-20.note: size 20 root");
        // How much of it a checkpoint vouches for, none included.
        expect(r.out).toContain(
          from === 21
            ? "none of the export's 20 events is covered by a checkpoint yet"
            : `the checkpoints cover ${21 - from} of the export's ${41 - from} events (seq ${from}..20)`,
        );
      }
      const both = await run(
        sinceText(12),
        ...["--key", key.vkey, "--checkpoint", "cp-20.note"],
        ...["--checkpoint", "cp-11.note"],
      );
      expect(both.code).toBe(0);
      expect(both.out).toContain("checkpoint cp-11.note: size 11 root");
    });

    it("fails a rewritten event after its start, or a frontier not the signed tree's", async () => {
      const edited = sinceText(6).replace('"reason":"ok-7"', '"reason":"ok-X"');
      expect((await run(edited, "--key", key.vkey, "--checkpoint", "cp-20.note")).code).toBe(1);
      // Rewritten after the start with the chain recomputed (what a database owner can do): the
      // chain checks out from the header on, the tree does not reach the signed root.
      const tail = rechain([...log.slice(0, 9), { ...log[9]!, reason: "forged" }, ...log.slice(10)]);
      const recomputed = sinceText(6, tail, frontierOf(log.slice(0, 5)));
      const rewritten = await run(recomputed, "--key", key.vkey, "--checkpoint", "cp-20.note");
      expect(rewritten.code).toBe(1);
      expect(rewritten.out).toMatch(/^broken: cp-20.note: the tree of the export's first 20 events/);
      expect((await run(recomputed)).code).toBe(0); // as a chain alone it verifies
      // An owner who rewrote event 3 and re-chained: the export after it checks out as a chain,
      // but the frontier of the rewritten prefix does not reach the signed root.
      const forged = rechain([...log.slice(0, 2), { ...log[2]!, reason: "forged" }, ...log.slice(3)]);
      const r = await run(sinceText(6, forged), "--key", key.vkey, "--checkpoint", "cp-20.note");
      expect(r.code).toBe(1);
      expect(r.out).toMatch(
        /^broken: cp-20.note: the tree of the export's first 20 events \(the header's frontier of 5/,
      );
      // Any frontier hash altered: the same.
      const bent = frontierOf(log.slice(0, 5));
      bent[0] = toBase64(new Uint8Array(32).fill(7));
      expect((await run(sinceText(6, log, bent), "--key", key.vkey, "--checkpoint", "cp-20.note")).code).toBe(
        1,
      );
    });

    it("cannot check a checkpoint older than its start: not verified, exit 1, saying which", async () => {
      await writeFile(join(dir, "cp-11.note"), checkpointOf(log, 11, key.signer));
      const r = await run(
        sinceText(21),
        ...["--key", key.vkey, "--checkpoint", "cp-20.note"],
        ...["--checkpoint", "cp-11.note"],
      );
      expect(r.code).toBe(1);
      expect(r.out).toMatch(
        /^not verified against the checkpoints: cp-11.note covers 11 events and the export starts at seq 21/,
      );
    });

    it("refuses a header whose frontier has the wrong number of hashes, or one that is not base64", async () => {
      const three = frontierOf(log.slice(0, 7)); // 7 = 4 + 2 + 1: three hashes, for from 8
      for (const frontier of [three.slice(1), [...three, three[0]!], [...three.slice(0, 2), "not base64"]]) {
        const r = await run(sinceText(8, log, frontier));
        expect(r.code).toBe(1);
        expect(r.out).toMatch(/bad_header/);
      }
      expect((await run(sinceText(8, log, three))).code).toBe(0);
    });
  });

  it("fails a mid-chain export that is itself altered as broken, checkpoint or not", async () => {
    const edited = exportText(log.slice(5)).replace('"reason":"ok-7"', '"reason":"ok-X"');
    for (const args of [[], ["--key", key.vkey, "--checkpoint", "cp-20.note"]]) {
      const r = await run(edited, ...args);
      expect(r.code).toBe(1);
      expect(r.out).toMatch(/broken at seq 8 .*hash_mismatch/);
    }
  });

  it("fails a whole export against a checkpoint at a chain break", async () => {
    const text = exportText(log).replace('"reason":"ok-3"', '"reason":"ok-X"');
    const bad = await run(text, "--key", key.vkey, "--checkpoint", "cp-20.note");
    expect(bad).toMatchObject({
      code: 1,
      out: expect.stringMatching(/^broken: broken at seq 4 .*hash_mismatch/),
    });
  });

  it("refuses a key without checkpoints, checkpoints without a key, and a bad key, with exit 2", async () => {
    expect((await run(log, "--key", key.vkey)).code).toBe(2);
    expect((await run(log, "--checkpoint", "cp-20.note")).code).toBe(2);
    expect((await run(log, "--key", "not-a-key", "--checkpoint", "cp-20.note")).code).toBe(2);
    expect((await run(log, "--key", key.vkey, "--checkpoint", "missing.note")).code).toBe(2);
  });
});
