import type { Clock } from "@phaselock/core";
import type { SigningKeysRepo, Tx } from "@phaselock/db";
import type { LinkClaims } from "@phaselock/policy";
import type { ChangeMessage } from "@phaselock/state";
import {
  decryptPrivateKey,
  encryptPrivateKey,
  generateSigningKey,
  importSigningKey,
  type LinkSubject,
  type PublicJwk,
  type SharedLinkClaims,
  type SigningKey,
  signLink,
  signLinks,
} from "@phaselock/tokens";

/** Signs link tokens with one key; capture it once per request so a batch never mixes keys. */
export interface LinkSigner {
  readonly kid: string;
  sign(claims: LinkClaims): Promise<string>;
  /** One token per subject, in order, all with `shared` claims (a batch: see `signLinks`). */
  signMany(shared: SharedLinkClaims, subjects: readonly LinkSubject[]): Promise<string[]>;
}

export interface KeyManagerOptions {
  signingKeys: SigningKeysRepo;
  /** 32-byte key encryption key: private keys are stored only encrypted under it. */
  kek: Uint8Array;
  clock: Clock;
}

/** A key change the caller announces on the change feed (`signing-key`) once committed. */
export interface KeyChange {
  kid: string;
  publicJwk: PublicJwk;
  version: number;
}

/** The change-feed announcement of a new signing key, so gateways add it to their key ring. */
export const keyChangeMessage = (k: KeyChange): ChangeMessage => ({
  version: k.version,
  change: { type: "signing-key", kid: k.kid, publicJwk: { ...k.publicJwk } },
});

const toJwk = (kid: string, stored: Record<string, string>): PublicJwk => ({
  kty: "OKP",
  crv: "Ed25519",
  x: stored.x ?? "",
  kid,
  alg: "EdDSA",
  use: "sig",
});

/**
 * Owns the Ed25519 signing keys: one active key signs, retired keys stay published in the JWKS
 * until the last token they signed has expired (`lastExpiresAt`, raised in each issuance's
 * transaction through {@link KeyManager.recordIssued}). Private keys are stored only
 * AES-256-GCM-encrypted under the KEK and decrypted only for the active key.
 */
export class KeyManager {
  readonly #repo: SigningKeysRepo;
  readonly #kek: Uint8Array;
  readonly #clock: Clock;
  #active: SigningKey | undefined;
  /** The last queued {@link refresh} read (settled, never rejecting), and the one not yet begun. */
  #refreshTail: Promise<unknown> = Promise.resolve();
  #nextRefresh: Promise<boolean> | undefined;

  constructor(opts: KeyManagerOptions) {
    if (opts.kek.byteLength !== 32) throw new Error("KeyManager needs a 32-byte key encryption key");
    this.#repo = opts.signingKeys;
    this.#kek = opts.kek;
    this.#clock = opts.clock;
  }

  /**
   * Loads the active key, or generates and stores one when there is none. Call at start; a
   * created key is returned so the caller can announce it. Throws when the stored key cannot be
   * decrypted with this KEK (wrong `KEY_ENCRYPTION_KEY`).
   */
  async ensureActiveKey(): Promise<{ kid: string; created: KeyChange | null }> {
    if (await this.refresh()) return { kid: this.#active!.kid, created: null };
    const created = await this.createKey(this.#repo);
    return { kid: created.kid, created };
  }

  /** Generates a key and stores it through `repo` (a caller's transaction, which records it). */
  createKey(repo: SigningKeysRepo): Promise<KeyChange> {
    return this.#store(false, repo);
  }

  /**
   * Reloads the active key from the database (another instance may have rotated). Reads run one
   * at a time, and calls made while one runs share one more read after it: a burst of feed hints
   * (anyone who can write Redis can send them) costs two queries, and an older read finishing
   * late cannot put back a key a newer one replaced.
   */
  refresh(): Promise<boolean> {
    if (!this.#nextRefresh) {
      const next: Promise<boolean> = this.#refreshTail.then(() => {
        // Started: a later call needs a read of its own, which may see a newer key.
        if (this.#nextRefresh === next) this.#nextRefresh = undefined;
        return this.#readActive();
      });
      this.#nextRefresh = next;
      this.#refreshTail = next.catch(() => {});
    }
    return this.#nextRefresh;
  }

  async #readActive(): Promise<boolean> {
    const row = await this.#repo.getActive();
    if (!row) return false;
    if (this.#active?.kid !== row.kid) {
      this.#active = await importSigningKey(row.kid, decryptPrivateKey(row.privateKeyEnc, this.#kek));
    }
    return true;
  }

  /**
   * Makes a new key the active one and retires the previous one in one transaction. The old key
   * keeps verifying what it signed: it stays in the JWKS until its `lastExpiresAt`.
   */
  async rotate(repo: SigningKeysRepo = this.#repo): Promise<KeyChange & { previousKid: string | null }> {
    const previousKid = this.#active?.kid ?? (await repo.getActive())?.kid ?? null;
    const created = await this.#store(true, repo);
    return { ...created, previousKid };
  }

  /**
   * Emergency revocation of `kid` (compromise). When it is the active key a new one is rotated
   * in first, so signing never stops and never uses the revoked key. `not_found` / `already`
   * leave everything as it was.
   */
  async revoke(
    kid: string,
    reason: string,
    repo: SigningKeysRepo = this.#repo,
  ): Promise<
    | { status: "revoked"; version: number; rotated: (KeyChange & { previousKid: string | null }) | null }
    | { status: "not_found" | "already" }
  > {
    // Inside a caller's transaction the repository is that transaction's: read nothing beside it
    // (one embedded connection would wait on itself). The route refreshes before it begins.
    if (repo === this.#repo) await this.refresh();
    let rotated: (KeyChange & { previousKid: string | null }) | null = null;
    if ((await repo.getActive())?.kid === kid) rotated = await this.rotate(repo);
    const r = await repo.revoke(kid, reason, this.#clock.now());
    if (r.status !== "revoked") return { status: r.status };
    return { status: "revoked", version: r.version, rotated };
  }

  /** The active key's signer. Throws before {@link ensureActiveKey} has run. */
  signer(): LinkSigner {
    const key = this.#active;
    if (!key) throw new Error("no active signing key: call ensureActiveKey() first");
    return {
      kid: key.kid,
      sign: (claims) => signLink(key, claims),
      signMany: (shared, subjects) => signLinks(key, shared, subjects),
    };
  }

  /**
   * Notes that `kid` signed a token valid until `exp`, so the key stays published at least that
   * long. Run it in the issuance's transaction: a token never exists without its key's record.
   * False, recording nothing, when `kid` has been retired or revoked meanwhile (by this instance
   * or another): the caller must not hand out what it signed.
   */
  recordIssued(kid: string, exp: Date, tx?: Tx): Promise<boolean> {
    return this.#repo.bumpLastExpiresAt(kid, exp, tx);
  }

  /** The JWKS to publish at `now`: the active key and retired keys whose tokens may still be live. */
  async jwks(now: Date): Promise<{ keys: PublicJwk[] }> {
    const published = await this.#repo.listPublished(now);
    return { keys: published.map((k) => toJwk(k.kid, k.publicJwk)) };
  }

  async #store(retirePrevious: boolean, repo: SigningKeysRepo = this.#repo): Promise<KeyChange> {
    const generated = await generateSigningKey();
    const now = this.#clock.now();
    const { version } = await repo.insert(
      {
        kid: generated.kid,
        publicJwk: { ...generated.publicJwk },
        privateKeyEnc: encryptPrivateKey(generated.privatePkcs8, this.#kek),
        createdAt: now,
      },
      retirePrevious ? { retireActiveAt: now } : {},
    );
    this.#active = { kid: generated.kid, privateKey: generated.privateKey };
    return { kid: generated.kid, publicJwk: generated.publicJwk, version };
  }
}
