import { randomBytes } from "node:crypto";
import { type Clock, sha256Hex } from "@phaselock/core";

/** An issued-links file a session keeps, and the issuance it came from (for its page). */
export interface KeptDownload {
  filename: string;
  csv: string;
  campaignId?: string;
  phase?: string;
}

/** One signed-in browser. The credential never leaves the server. */
export interface ConsoleSession {
  /** The API key or admin token the person signed in with. */
  credential: string;
  /** The per-session CSRF token every form carries. */
  csrf: string;
  createdAt: number;
  lastSeenAt: number;
  /** Issued-links CSV files kept for "Download links (CSV)", by download id (a few, newest last). */
  downloads: Map<string, KeptDownload>;
  /** A just-created API key, for the one page that shows it (then forgotten). */
  newKey?: { id: string; key: string; role: string; campaignId: string | null } | undefined;
  /** A message for the next page shown (after a POST's redirect). */
  flash?: { kind: "ok" | "error" | "warn" | "info"; text: string } | undefined;
}

export interface ConsoleSessionOptions {
  clock: Clock;
  /** Signed out after this long without a request; default 30 minutes. */
  idleMs?: number;
  /** Signed out this long after sign-in, however active; default 12 hours. */
  absoluteMs?: number;
  /** At most this many sessions; the least recently used is dropped first. Default 10,000. */
  maxSessions?: number;
  /**
   * At most this many sessions of one credential; its least recently used is dropped first, so
   * signing in again and again with one key never pushes anyone else's session out. Default 10.
   */
  maxPerCredential?: number;
  /** Downloads one session keeps, in bytes (the newest is always kept). Default 24 MiB. */
  maxDownloadBytes?: number;
  /**
   * Downloads all sessions keep together, in bytes: past it the oldest anyone kept goes first, so
   * many sessions (one key signed in ten times, or many keys) cannot pin the process's memory.
   * Default 128 MiB.
   */
  maxTotalDownloadBytes?: number;
}

/** Downloads kept per session: a coordinator issuing batch after batch keeps the latest few. */
const MAX_DOWNLOADS = 5;

/**
 * Console sessions, in this process's memory: a random 256-bit id in the cookie, stored only as
 * its SHA-256, mapped to the credential. Bounded, with idle and absolute expiry. Sessions belong
 * to one token-service instance; a restart signs everyone out (acceptable for a console).
 */
export class ConsoleSessions {
  readonly idleMs: number;
  readonly absoluteMs: number;
  readonly #clock: Clock;
  readonly #max: number;
  readonly #maxPerCredential: number;
  readonly #maxDownloadBytes: number;
  readonly #maxTotalDownloadBytes: number;
  readonly #byHash = new Map<string, ConsoleSession>();
  /** Every kept download, oldest first, with its bytes: for the budget all sessions share. */
  readonly #kept = new Map<string, { session: ConsoleSession; bytes: number }>();
  #keptBytes = 0;

  constructor(opts: ConsoleSessionOptions) {
    this.#clock = opts.clock;
    this.idleMs = opts.idleMs ?? 30 * 60_000;
    this.absoluteMs = opts.absoluteMs ?? 12 * 3_600_000;
    this.#max = opts.maxSessions ?? 10_000;
    this.#maxPerCredential = opts.maxPerCredential ?? 10;
    this.#maxDownloadBytes = opts.maxDownloadBytes ?? 24 * 1024 * 1024;
    this.#maxTotalDownloadBytes = opts.maxTotalDownloadBytes ?? 128 * 1024 * 1024;
    if (
      this.idleMs <= 0 ||
      this.absoluteMs <= 0 ||
      this.#max < 1 ||
      this.#maxPerCredential < 1 ||
      this.#maxDownloadBytes < 1 ||
      this.#maxTotalDownloadBytes < 1
    ) {
      throw new Error(
        "ConsoleSessions: idleMs, absoluteMs, maxSessions, maxPerCredential, maxDownloadBytes and maxTotalDownloadBytes must be positive",
      );
    }
  }

  get size(): number {
    return this.#byHash.size;
  }

  /** Bytes of every download kept, all sessions together. */
  get downloadBytes(): number {
    return this.#keptBytes;
  }

  /** Starts a session; answers the cookie value (shown to no one but the browser). */
  create(credential: string): { id: string; session: ConsoleSession } {
    const now = this.#clock.now().getTime();
    this.#sweep(now);
    // The same key's own sessions make room first (the map is least recently used first).
    const same = [...this.#byHash].filter(([, s]) => s.credential === credential);
    for (const [hash] of same.slice(0, Math.max(0, same.length - this.#maxPerCredential + 1))) {
      this.#drop(hash);
    }
    while (this.#byHash.size >= this.#max) {
      const oldest = this.#byHash.keys().next().value;
      if (oldest === undefined) break;
      this.#drop(oldest);
    }
    const id = randomBytes(32).toString("base64url");
    const session: ConsoleSession = {
      credential,
      csrf: randomBytes(32).toString("base64url"),
      createdAt: now,
      lastSeenAt: now,
      downloads: new Map(),
    };
    this.#byHash.set(sha256Hex(id), session);
    return { id, session };
  }

  /**
   * The live session of a cookie value; null when unknown or expired (then forgotten). Touched
   * (its idle timer restarted) unless `touch: false`: a page's own background refresh is not
   * someone at the keyboard.
   */
  get(id: string | undefined, opts: { touch?: boolean } = {}): ConsoleSession | null {
    if (!id || id.length > 100) return null;
    const hash = sha256Hex(id);
    const session = this.#byHash.get(hash);
    if (!session) return null;
    const now = this.#clock.now().getTime();
    if (this.#expired(session, now)) {
      this.#drop(hash);
      return null;
    }
    if (opts.touch === false) return session;
    session.lastSeenAt = now;
    // Re-insert: the map's order is least recently used first.
    this.#byHash.delete(hash);
    this.#byHash.set(hash, session);
    return session;
  }

  delete(id: string | undefined): void {
    if (id) this.#drop(sha256Hex(id));
  }

  /** Keeps an issued-links file for download; answers its id. */
  keepDownload(
    session: ConsoleSession,
    filename: string,
    csv: string,
    about: { campaignId?: string; phase?: string } = {},
  ): string {
    const id = randomBytes(16).toString("base64url");
    session.downloads.set(id, { filename, csv, ...about });
    const size = Buffer.byteLength(csv, "utf8");
    this.#kept.set(id, { session, bytes: size });
    this.#keptBytes += size;
    const bytes = () => {
      let n = 0;
      for (const d of session.downloads.keys()) n += this.#kept.get(d)?.bytes ?? 0;
      return n;
    };
    while (
      session.downloads.size > MAX_DOWNLOADS ||
      (session.downloads.size > 1 && bytes() > this.#maxDownloadBytes)
    ) {
      const first = session.downloads.keys().next().value;
      if (first === undefined) break;
      this.#forget(first);
    }
    // The budget all sessions share: the oldest download anyone kept goes first (this one last).
    while (this.#keptBytes > this.#maxTotalDownloadBytes && this.#kept.size > 1) {
      const oldest = this.#kept.keys().next().value;
      if (oldest === undefined || oldest === id) break;
      this.#forget(oldest);
    }
    return id;
  }

  /** Forgets one kept download, in its session and in the shared budget. */
  #forget(id: string): void {
    const kept = this.#kept.get(id);
    if (!kept) return;
    this.#kept.delete(id);
    this.#keptBytes -= kept.bytes;
    kept.session.downloads.delete(id);
  }

  /** Forgets a session and every download it kept. */
  #drop(hash: string): void {
    const session = this.#byHash.get(hash);
    if (!session) return;
    this.#byHash.delete(hash);
    for (const id of [...session.downloads.keys()]) this.#forget(id);
  }

  #expired(s: ConsoleSession, now: number): boolean {
    return now - s.lastSeenAt >= this.idleMs || now - s.createdAt >= this.absoluteMs;
  }

  #sweep(now: number): void {
    for (const [hash, s] of this.#byHash) if (this.#expired(s, now)) this.#drop(hash);
  }
}
