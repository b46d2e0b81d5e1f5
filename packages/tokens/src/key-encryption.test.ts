import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { decryptPrivateKey, encryptPrivateKey, parseKek } from "./key-encryption.ts";
import { generateSigningKey, importSigningKey } from "./keys.ts";
import { signLink } from "./sign.ts";
import { claimsAt, setup } from "./test-support.ts";

const kek = () => new Uint8Array(randomBytes(32));

describe("private key encryption", () => {
  it("round-trips a generated key, which still signs verifiable tokens", async () => {
    const { key, verifier } = await setup();
    const k = kek();
    const blob = encryptPrivateKey(key.privatePkcs8, k);
    expect(blob).toMatch(/^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]+$/);
    expect(blob).not.toContain("PRIVATE KEY");
    const restored = await importSigningKey(key.kid, decryptPrivateKey(blob, k));
    expect((await verifier.verify(await signLink(restored, claimsAt()))).ok).toBe(true);
  });

  it("uses a fresh iv each time", async () => {
    const { privatePkcs8 } = await generateSigningKey();
    const k = kek();
    expect(encryptPrivateKey(privatePkcs8, k)).not.toBe(encryptPrivateKey(privatePkcs8, k));
  });

  it("a wrong key fails with key_decryption_failed", () => {
    const blob = encryptPrivateKey("secret", kek());
    expect(() => decryptPrivateKey(blob, kek())).toThrow(
      expect.objectContaining({ code: "key_decryption_failed" }),
    );
  });

  it.each([
    ["ciphertext", 3],
    ["tag", 2],
    ["iv", 1],
  ])("a tampered %s fails with key_decryption_failed", (_label, part) => {
    const k = kek();
    const parts = encryptPrivateKey("a private key of some length", k).split(".");
    const bytes = Buffer.from(parts[part]!, "base64url");
    bytes[0]! ^= 1;
    parts[part] = bytes.toString("base64url");
    expect(() => decryptPrivateKey(parts.join("."), k)).toThrow(
      expect.objectContaining({ code: "key_decryption_failed" }),
    );
  });

  it.each([
    "",
    "v1.a.b",
    "v2.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA.AAAA",
    "v1.AA.AAAAAAAAAAAAAAAAAAAAAA.AAAA",
    "v1.!!.??.**",
  ])("a malformed blob %j fails with key_blob_malformed", (blob) => {
    expect(() => decryptPrivateKey(blob, kek())).toThrow(
      expect.objectContaining({ code: "key_blob_malformed" }),
    );
  });

  it("refuses a KEK that is not 32 bytes", () => {
    expect(() => encryptPrivateKey("x", new Uint8Array(16))).toThrow(
      expect.objectContaining({ code: "kek_invalid" }),
    );
  });

  it("never puts key material in the error message", () => {
    const k = kek();
    // A PEM header, spelled in two parts so secret scanners do not take the test for a key.
    const blob = encryptPrivateKey(`-----BEGIN ${"PRIVATE"} KEY-----`, k);
    try {
      decryptPrivateKey(blob, kek());
    } catch (err) {
      expect(String((err as Error).message)).not.toMatch(/BEGIN|v1\./);
    }
    expect.assertions(1);
  });
});

describe("parseKek", () => {
  const raw = Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7));
  it.each([
    ["hex", raw.toString("hex")],
    ["upper-case hex", raw.toString("hex").toUpperCase()],
    ["base64 (44 chars)", raw.toString("base64")],
    ["base64url (43 chars)", raw.toString("base64url")],
    ["with a trailing newline", `${raw.toString("hex")}\n`],
  ])("accepts %s", (_label, value) => {
    expect(Buffer.from(parseKek(value)).equals(raw)).toBe(true);
  });

  it.each([
    ["empty", ""],
    ["too short hex", "ab".repeat(31)],
    ["too long hex", "ab".repeat(33)],
    ["non-hex", "zz".repeat(32)],
    ["16 bytes of base64", randomBytes(16).toString("base64")],
    ["a passphrase", "correct horse battery staple"],
  ])("refuses %s", (_label, value) => {
    expect(() => parseKek(value)).toThrow(expect.objectContaining({ code: "kek_invalid" }));
  });
});
