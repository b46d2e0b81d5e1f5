import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { leafHash, rootOf } from "./merkle.ts";
import {
  ed25519FromSeed,
  formatCheckpoint,
  keyId,
  NoteError,
  parseCheckpoint,
  parseSignerKey,
  parseVerifierKey,
  signCheckpoint,
  signerKeyString,
  signNote,
  verifierKeyString,
  verifyCheckpoint,
  verifyNote,
} from "./note.ts";

// The example of golang.org/x/mod/sumdb/note's documentation: an external known answer for key
// ids, both key strings and the signature bytes (Ed25519 signing is deterministic).
const GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
const GO_TEXT =
  "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_NOTE = `${GO_TEXT}\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`;

const keyPair = (name: string) => {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return { signer: { name, privateKey }, vkey: verifierKeyString(name, publicKey) };
};

describe("signed note (known answer)", () => {
  it("reproduces the Go reference note, key id and key strings byte for byte", () => {
    const signer = parseSignerKey(GO_SKEY);
    expect(signer.name).toBe("PeterNeumann");
    expect(signNote(GO_TEXT, signer)).toBe(GO_NOTE);
    expect(verifierKeyString(signer.name, signer.privateKey)).toBe(GO_VKEY);
    const seed = Buffer.from("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "base64").subarray(1);
    expect(signerKeyString("PeterNeumann", seed)).toBe(GO_SKEY);
    expect(keyId("PeterNeumann", ed25519FromSeed(seed).publicKey)).toBe("c74f20a3");
    const v = parseVerifierKey(GO_VKEY);
    expect(v).toMatchObject({ name: "PeterNeumann", keyId: "c74f20a3" });
    expect(verifyNote(GO_NOTE, v)).toEqual({ ok: true, body: GO_TEXT });
    expect(verifyNote(Buffer.from(GO_NOTE, "utf8"), GO_VKEY)).toEqual({ ok: true, body: GO_TEXT });
  });
});

describe("signed note", () => {
  const a = keyPair("audit.example/a");
  const b = keyPair("audit.example/b");

  it("rejects a note signed by another key, and one whose body changed", () => {
    const note = signNote("hello\n", a.signer);
    expect(verifyNote(note, a.vkey)).toEqual({ ok: true, body: "hello\n" });
    expect(verifyNote(note, b.vkey)).toEqual({ ok: false, reason: "no_signature" });
    expect(verifyNote(note.replace("hello", "hellO"), a.vkey)).toEqual({
      ok: false,
      reason: "bad_signature",
    });
    // Same name, other key: the key id differs, so the signature is not even attributed to it.
    const impostor = keyPair("audit.example/a");
    expect(verifyNote(note, impostor.vkey)).toEqual({ ok: false, reason: "no_signature" });
  });

  it("accepts other keys' signatures beside the one it needs, in either order", () => {
    const byA = signNote("x\n", a.signer);
    const byB = signNote("x\n", b.signer);
    const both = `${byA}${byB.slice("x\n\n".length)}`;
    expect(verifyNote(both, a.vkey)).toEqual({ ok: true, body: "x\n" });
    expect(verifyNote(both, b.vkey)).toEqual({ ok: true, body: "x\n" });
  });

  it.each([
    ["no signature block", "hello\n"],
    ["no final newline", () => signNote("hello\n", a.signer).slice(0, -1)],
    ["a carriage return", () => signNote("hello\n", a.signer).replace("\n\n", "\r\n\n")],
    ["a line that is not a signature", () => `${signNote("hello\n", a.signer)}not a signature\n`],
    ["a signature with bad base64", () => `${signNote("hello\n", a.signer)}\u2014 x !!!!\n`],
    ["a hyphen instead of an em dash", () => signNote("hello\n", a.signer).replace("\u2014", "-")],
    [
      "the same signature twice",
      () => `${signNote("hello\n", a.signer)}${signNote("hello\n", a.signer).slice(7)}`,
    ],
    ["invalid UTF-8", Buffer.from([0x68, 0xff, 0x0a, 0x0a])],
  ])("rejects a malformed note: %s", (_name, make) => {
    const text = typeof make === "function" ? make() : make;
    expect(verifyNote(text, a.vkey)).toMatchObject({ ok: false, reason: "malformed" });
  });

  it("refuses to sign a body without a final newline, with an empty line or control characters", () => {
    for (const body of ["", "hello", "a\n\nb\n", "\nb\n", "tab\there\n"]) {
      expect(() => signNote(body, a.signer)).toThrow(NoteError);
    }
  });

  it("refuses malformed verifier keys and keys whose id does not match", () => {
    // The base64 part may itself hold a "+".
    const [name, id] = a.vkey.split("+") as [string, string];
    const key = a.vkey.slice(name.length + id.length + 2);
    expect(() => parseVerifierKey(`${name}+00000000+${key}`)).toThrow(/id does not match/);
    expect(() => parseVerifierKey(`${name}+${id}`)).toThrow(NoteError);
    expect(() => parseVerifierKey(`+${id}+${key}`)).toThrow(NoteError);
    expect(() => parseVerifierKey(`${name}+${id}+${key.slice(1)}`)).toThrow(NoteError);
    expect(() => verifierKeyString("has space", ed25519FromSeed(new Uint8Array(32)).publicKey)).toThrow(
      NoteError,
    );
    expect(parseVerifierKey(`${a.vkey}\n`).keyId).toBe(id);
  });
});

describe("checkpoint", () => {
  const root = rootOf([leafHash("a"), leafHash("b"), leafHash("c")]);
  const signer = parseSignerKey(signerKeyString("phaselock.example/audit", new Uint8Array(32).fill(7)));
  const vkey = verifierKeyString(signer.name, signer.privateKey);

  it("formats origin, decimal size and base64 root, one per line, and parses back", () => {
    const body = formatCheckpoint({ origin: "phaselock.example/audit", size: 3, rootHash: root });
    expect(body).toBe(`phaselock.example/audit\n3\n${Buffer.from(root).toString("base64")}\n`);
    expect(parseCheckpoint(body)).toEqual({
      origin: "phaselock.example/audit",
      size: 3,
      rootHash: root,
      extensions: [],
    });
    const withExt = formatCheckpoint({ origin: "o", size: 0, rootHash: root, extensions: ["ts 123"] });
    expect(parseCheckpoint(withExt).extensions).toEqual(["ts 123"]);
  });

  it.each([
    ["a leading zero in the size", (r: string) => `o\n03\n${r}\n`],
    ["a negative size", (r: string) => `o\n-3\n${r}\n`],
    ["a short root", () => "o\n3\nAAAA\n"],
    ["unpadded base64", (r: string) => `o\n3\n${r.replace(/=+$/, "")}\n`],
    ["no root line", () => "o\n3\n"],
    ["an empty origin", (r: string) => `\n3\n${r}\n`],
  ])("refuses a checkpoint body with %s", (_name, make) => {
    expect(() => parseCheckpoint(make(Buffer.from(root).toString("base64")))).toThrow(NoteError);
  });

  it("signs and verifies, checks the origin, and fails with another key", () => {
    const note = signCheckpoint({ origin: "phaselock.example/audit", size: 3, rootHash: root }, signer);
    const opened = verifyCheckpoint(note, vkey, "phaselock.example/audit");
    expect(opened).toEqual({
      ok: true,
      checkpoint: { origin: "phaselock.example/audit", size: 3, rootHash: root, extensions: [] },
    });
    expect(verifyCheckpoint(note, vkey, "elsewhere")).toEqual({ ok: false, reason: "wrong_origin" });
    expect(verifyCheckpoint(note, keyPair(signer.name).vkey)).toEqual({ ok: false, reason: "no_signature" });
    expect(verifyCheckpoint(note.replace("\n3\n", "\n4\n"), vkey)).toEqual({
      ok: false,
      reason: "bad_signature",
    });
  });
});
