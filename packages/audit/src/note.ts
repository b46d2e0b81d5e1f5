import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from "node:crypto";
import { HASH_SIZE, type Hash } from "./merkle.ts";

// C2SP signed-note (https://c2sp.org/signed-note) with Ed25519 keys, and the C2SP tlog-checkpoint
// body (https://c2sp.org/tlog-checkpoint) it carries. Byte for byte what golang.org/x/mod/sumdb/note
// and the transparency-dev tools write, so any of them can check our checkpoints.

/** Thrown for a malformed key, body or checkpoint. Verification failures are results, not throws. */
export class NoteError extends Error {
  override readonly name = "NoteError";
}

const ALG_ED25519 = 0x01;
const SIG_PREFIX = "\u2014 "; // "— ": em dash, space
const MAX_SIGNATURES = 100;

/** A signer: the key's name (for a log, its origin) and its Ed25519 private key. */
export interface NoteSigner {
  name: string;
  privateKey: KeyObject;
}

/** A parsed verifier key: `name+keyid+base64(0x01 || pubkey)`. */
export interface VerifierKey {
  name: string;
  /** The 4-byte key id as 8 lowercase hex digits. */
  keyId: string;
  publicKey: KeyObject;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A string that encodes to UTF-8 and back unchanged (no lone surrogate). */
const wellFormed = (s: string): boolean => !LONE_SURROGATE.test(s);

/** A name is non-empty, has no whitespace and no `+` (the key strings' separator). */
export function isValidKeyName(name: string): boolean {
  return name !== "" && !/[\s+]/u.test(name) && wellFormed(name);
}

function checkName(name: string): void {
  if (!isValidKeyName(name)) throw new NoteError("key name must be non-empty, without spaces or '+'");
}

/** Raw 32 bytes of an Ed25519 public key. */
export function rawPublicKey(key: KeyObject): Uint8Array {
  const publicKey = key.type === "private" ? createPublicKey(key) : key;
  if (publicKey.asymmetricKeyType !== "ed25519") throw new NoteError("not an Ed25519 key");
  const { x } = publicKey.export({ format: "jwk" });
  return new Uint8Array(Buffer.from(x as string, "base64url"));
}

/** Ed25519 key objects from a raw 32-byte seed (what the `PRIVATE+KEY+…` string holds). */
export function ed25519FromSeed(seed: Uint8Array): { privateKey: KeyObject; publicKey: KeyObject } {
  if (seed.length !== 32) throw new NoteError("an Ed25519 seed is 32 bytes");
  // PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410): fixed 16-byte header, then the seed.
  const der = Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]);
  const privateKey = createPrivateKey({ key: der, format: "der", type: "pkcs8" });
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

/** Key id: the first 4 bytes of SHA-256(name || "\n" || 0x01 || pubkey). */
export function keyId(name: string, publicKey: KeyObject | Uint8Array): string {
  const raw = publicKey instanceof Uint8Array ? publicKey : rawPublicKey(publicKey);
  return createHash("sha256")
    .update(`${name}\n`, "utf8")
    .update(Uint8Array.of(ALG_ED25519))
    .update(raw)
    .digest()
    .subarray(0, 4)
    .toString("hex");
}

/** The verifier key string served at `/.well-known/audit-key`: `name+keyid+base64(0x01 || pubkey)`. */
export function verifierKeyString(name: string, publicKey: KeyObject | Uint8Array): string {
  checkName(name);
  const raw = publicKey instanceof Uint8Array ? publicKey : rawPublicKey(publicKey);
  if (raw.length !== 32) throw new NoteError("an Ed25519 public key is 32 bytes");
  const encoded = Buffer.concat([Uint8Array.of(ALG_ED25519), raw]).toString("base64");
  return `${name}+${keyId(name, raw)}+${encoded}`;
}

/** Parses a verifier key string; throws {@link NoteError} when it is malformed or its id is wrong. */
export function parseVerifierKey(text: string): VerifierKey {
  const { name, id, key } = splitKeyString(text.trim());
  if (key.length !== 33 || key[0] !== ALG_ED25519) throw new NoteError("verifier key is not Ed25519");
  const raw = key.subarray(1);
  if (keyId(name, raw) !== id) throw new NoteError("verifier key id does not match its key");
  const publicKey = createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(raw).toString("base64url") },
    format: "jwk",
  });
  return { name, keyId: id, publicKey };
}

/** `PRIVATE+KEY+name+keyid+base64(0x01 || seed)`: the signer key form of the Go note tools. */
export function signerKeyString(name: string, seed: Uint8Array): string {
  checkName(name);
  const { publicKey } = ed25519FromSeed(seed);
  const encoded = Buffer.concat([Uint8Array.of(ALG_ED25519), seed]).toString("base64");
  return `PRIVATE+KEY+${name}+${keyId(name, publicKey)}+${encoded}`;
}

/** Parses a `PRIVATE+KEY+…` string into a signer; throws {@link NoteError} when malformed. */
export function parseSignerKey(text: string): NoteSigner {
  const PREFIX = "PRIVATE+KEY+";
  if (!text.startsWith(PREFIX)) throw new NoteError("signer key must start with PRIVATE+KEY+");
  const { name, id, key } = splitKeyString(text.slice(PREFIX.length).trim());
  if (key.length !== 33 || key[0] !== ALG_ED25519) throw new NoteError("signer key is not Ed25519");
  const { privateKey, publicKey } = ed25519FromSeed(key.subarray(1));
  if (keyId(name, publicKey) !== id) throw new NoteError("signer key id does not match its key");
  return { name, privateKey };
}

function splitKeyString(text: string): { name: string; id: string; key: Buffer } {
  const first = text.indexOf("+");
  const second = text.indexOf("+", first + 1);
  if (first < 0 || second < 0) throw new NoteError("key must be name+keyid+key");
  const name = text.slice(0, first);
  const id = text.slice(first + 1, second);
  const b64 = text.slice(second + 1);
  checkName(name);
  if (!/^[0-9a-f]{8}$/.test(id)) throw new NoteError("key id must be 8 lowercase hex digits");
  const key = decodeBase64(b64);
  if (!key) throw new NoteError("key is not standard base64");
  return { name, id, key };
}

/** Strict standard base64 with padding: only the one canonical spelling of the bytes decodes. */
function decodeBase64(s: string): Buffer | null {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) return null;
  const bytes = Buffer.from(s, "base64");
  return bytes.toString("base64") === s ? bytes : null;
}

/**
 * Note text is well-formed UTF-8 (here: a well-formed string) with no control characters except
 * newline: what is signed is exactly what a reader sees.
 */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is refused
const BAD_TEXT = /[\u0000-\u0009\u000b-\u001f\u007f]/;

/** Signs `body` (one or more lines, each ending in "\n") and returns the note: body, blank line, signature. */
export function signNote(body: string, signer: NoteSigner): string {
  checkName(signer.name);
  checkBody(body);
  const sig = sign(null, Buffer.from(body, "utf8"), signer.privateKey);
  const id = Buffer.from(keyId(signer.name, signer.privateKey), "hex");
  return `${body}\n${SIG_PREFIX}${signer.name} ${Buffer.concat([id, sig]).toString("base64")}\n`;
}

function checkBody(body: string): void {
  if (body === "" || !body.endsWith("\n")) throw new NoteError("note body must end with a newline");
  if (!wellFormed(body) || BAD_TEXT.test(body)) throw new NoteError("note body has control characters");
  if (body.includes("\n\n") || body.startsWith("\n")) throw new NoteError("note body has an empty line");
}

export type NoteVerifyResult =
  | { ok: true; body: string }
  | { ok: false; reason: "malformed" | "no_signature" | "bad_signature" };

/**
 * Opens a signed note: ok with its body only when it carries a valid signature by `key`. Other
 * keys' signatures (witness cosignatures, say) are skipped; a signature that claims to be by
 * `key` but does not verify fails the note, as in the Go implementation.
 */
export function verifyNote(text: string | Uint8Array, key: VerifierKey | string): NoteVerifyResult {
  const verifier = typeof key === "string" ? parseVerifierKey(key) : key;
  let note: string;
  try {
    note = typeof text === "string" ? text : new TextDecoder("utf-8", { fatal: true }).decode(text);
  } catch {
    return { ok: false, reason: "malformed" };
  }
  if (!wellFormed(note) || BAD_TEXT.test(note) || !note.endsWith("\n")) {
    return { ok: false, reason: "malformed" };
  }
  const split = note.lastIndexOf("\n\n");
  if (split < 0) return { ok: false, reason: "malformed" };
  const body = note.slice(0, split + 1);
  try {
    checkBody(body);
  } catch {
    return { ok: false, reason: "malformed" };
  }
  const lines = note.slice(split + 2, -1).split("\n");
  if (lines.length > MAX_SIGNATURES) return { ok: false, reason: "malformed" };
  let verified = false;
  for (const line of lines) {
    if (!line.startsWith(SIG_PREFIX)) return { ok: false, reason: "malformed" };
    const rest = line.slice(SIG_PREFIX.length);
    const space = rest.indexOf(" ");
    const name = rest.slice(0, space);
    const blob = space < 0 ? null : decodeBase64(rest.slice(space + 1));
    if (!isValidKeyName(name) || !blob || blob.length < 5) return { ok: false, reason: "malformed" };
    if (name !== verifier.name || blob.subarray(0, 4).toString("hex") !== verifier.keyId) continue;
    // A second signature by the same key is a note nobody should have produced.
    if (verified) return { ok: false, reason: "malformed" };
    const sig = blob.subarray(4);
    if (sig.length !== 64 || !verify(null, Buffer.from(body, "utf8"), verifier.publicKey, sig)) {
      return { ok: false, reason: "bad_signature" };
    }
    verified = true;
  }
  return verified ? { ok: true, body } : { ok: false, reason: "no_signature" };
}

/** A checkpoint: the log's origin, its size and root; extension lines pass through untouched. */
export interface Checkpoint {
  origin: string;
  size: number;
  rootHash: Hash;
  extensions?: readonly string[];
}

/** The tlog-checkpoint body: origin, decimal size, base64 root, any extension lines; each "\n"-ended. */
export function formatCheckpoint(cp: Checkpoint): string {
  if (cp.origin === "" || cp.origin.includes("\n")) throw new NoteError("origin must be one non-empty line");
  if (!Number.isSafeInteger(cp.size) || cp.size < 0)
    throw new NoteError("size must be a non-negative integer");
  if (cp.rootHash.length !== HASH_SIZE) throw new NoteError("root hash must be 32 bytes");
  const ext = cp.extensions ?? [];
  if (ext.some((l) => l === "" || l.includes("\n"))) throw new NoteError("extension lines must be non-empty");
  const body = [cp.origin, String(cp.size), Buffer.from(cp.rootHash).toString("base64"), ...ext]
    .map((l) => `${l}\n`)
    .join("");
  checkBody(body);
  return body;
}

/** Parses a checkpoint body (a verified note's body); throws {@link NoteError} when malformed. */
export function parseCheckpoint(body: string): Required<Checkpoint> {
  checkBody(body);
  const [origin, sizeLine, rootLine, ...extensions] = body.slice(0, -1).split("\n");
  if (!origin || sizeLine === undefined || rootLine === undefined) {
    throw new NoteError("checkpoint needs origin, size and root lines");
  }
  // Decimal without leading zeros: one spelling per size, as the spec requires.
  if (!/^(0|[1-9][0-9]*)$/.test(sizeLine) || !Number.isSafeInteger(Number(sizeLine))) {
    throw new NoteError("checkpoint size is not a decimal integer");
  }
  const root = decodeBase64(rootLine);
  if (!root || root.length !== HASH_SIZE) throw new NoteError("checkpoint root is not a base64 SHA-256 hash");
  return { origin, size: Number(sizeLine), rootHash: new Uint8Array(root), extensions };
}

/** Signs a checkpoint into a note. */
export const signCheckpoint = (cp: Checkpoint, signer: NoteSigner): string =>
  signNote(formatCheckpoint(cp), signer);

export type CheckpointVerifyResult =
  | { ok: true; checkpoint: Required<Checkpoint> }
  | { ok: false; reason: "malformed" | "no_signature" | "bad_signature" | "wrong_origin" };

/**
 * Opens a signed checkpoint: the note must verify with `key`, the body parse, and (when given)
 * the origin match. The key name need not equal the origin (a log may rename its key).
 */
export function verifyCheckpoint(
  text: string | Uint8Array,
  key: VerifierKey | string,
  origin?: string,
): CheckpointVerifyResult {
  const opened = verifyNote(text, key);
  if (!opened.ok) return opened;
  let checkpoint: Required<Checkpoint>;
  try {
    checkpoint = parseCheckpoint(opened.body);
  } catch {
    return { ok: false, reason: "malformed" };
  }
  if (origin !== undefined && checkpoint.origin !== origin) return { ok: false, reason: "wrong_origin" };
  return { ok: true, checkpoint };
}
