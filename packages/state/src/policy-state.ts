import { type Clock, PhaselockError } from "@phaselock/core";
import { addClosure, type PolicySnapshot, RevocationIndex } from "@phaselock/policy";
import type { BusStatus, ChangeFeed } from "./bus.ts";
import type { ChangeMessage, PolicyChange } from "./changes.ts";

/** How long the feed may go unconfirmed before a gateway stops answering (503 `unavailable`). */
export const STALE_AFTER_MS = 5000;

/** Messages kept while a reload is running or a gap is open; beyond this, reload from scratch. */
const MAX_PENDING = 10_000;

/** Reloads in a row before giving up until the next trigger (a source that lags the feed). */
const MAX_RELOAD_ROUNDS = 3;

/** Where the full policy state is read from (the database, via `loadPolicySnapshot`). */
export interface PolicySource {
  load(): Promise<PolicySnapshot>;
}

/** Called once per applied change, in version order. */
export type ChangeListener = (change: PolicyChange, version: number) => void;

export interface PolicyStateOptions {
  source: PolicySource;
  /** Changes from the Postgres log, paced by the bus: a `LoggedFeed` (never the bus itself). */
  bus: ChangeFeed;
  clock: Clock;
  /** Default {@link STALE_AFTER_MS}. */
  staleAfterMs?: number;
  onChange?: ChangeListener;
  /**
   * Runs with every reload, alongside `source.load()`: re-reads what the snapshot does not hold
   * (signing keys, deleted API keys), whose changes a reload may have skipped.
   * A failure fails the reload.
   */
  refreshKeys?: () => Promise<void>;
  /** Failures nobody awaits: background reloads, throwing change listeners. */
  onError?: (err: unknown) => void;
}

/** For `/readyz`. `version` is null until the first snapshot has loaded. */
export interface PolicyStateStatus {
  version: number | null;
  fresh: boolean;
  lastConfirmedAt: Date | null;
}

/**
 * The policy snapshot a service decides with, kept current from the change feed.
 *
 * A message is applied when its version is exactly one past the current one and ignored when it
 * is not newer. A message further ahead means one was missed: the state reloads from the source
 * (one reload at a time; requests that arrive meanwhile join it) and then applies the messages
 * newer than what it loaded. It also reloads at start and whenever the feed (re)connects.
 *
 * Freshness: a heartbeat, a message or a reload confirms the state, but only while nothing is
 * known to be missing; {@link isFresh} turns false once no confirmation came for `staleAfterMs`.
 */
export class PolicyState {
  readonly #source: PolicySource;
  readonly #bus: ChangeFeed;
  readonly #clock: Clock;
  readonly #staleAfterMs: number;
  readonly #refreshKeys: (() => Promise<void>) | undefined;
  readonly #onError: (err: unknown) => void;
  readonly #listeners = new Set<ChangeListener>();

  #snapshot: PolicySnapshot | undefined;
  #index = new RevocationIndex();
  /** Messages not yet applied (ahead of a gap), or received during a reload. */
  readonly #pending = new Map<number, ChangeMessage>();
  /** Highest version whose change went to the listeners, so none hears one twice. */
  #emitted = -1;
  /** A reload is owed that no pending message accounts for (reconnect, failure, bad message). */
  #dirty = false;
  /** True from the start of a reload until its last round ends (synchronously, unlike a promise). */
  #active = false;
  #reloading: Promise<void> = Promise.resolve();
  #lastConfirmedAt: Date | undefined;
  /**
   * Whether the feed is up as far as we know. A reload while it is down applies what the source
   * holds but confirms nothing: without a live feed a revocation could arrive any moment unheard,
   * so the state must go stale and the gateway fail closed, however often it polls the source.
   */
  #feedUp = false;
  #unsubscribe: (() => void) | undefined;

  constructor(opts: PolicyStateOptions) {
    this.#source = opts.source;
    this.#bus = opts.bus;
    this.#clock = opts.clock;
    this.#staleAfterMs = opts.staleAfterMs ?? STALE_AFTER_MS;
    this.#refreshKeys = opts.refreshKeys;
    this.#onError = opts.onError ?? (() => {});
    if (opts.onChange) this.#listeners.add(opts.onChange);
  }

  /**
   * Subscribes to the feed, then loads. Rejects when the first load fails; the state keeps
   * retrying on the next heartbeat, message or reconnect.
   */
  async start(): Promise<void> {
    if (this.#unsubscribe) throw new Error("PolicyState already started");
    let subscribed = false;
    this.#unsubscribe = this.#bus.subscribe({
      onMessage: (msg) => this.#onMessage(msg),
      // A `connected` during subscribe needs no reload of its own: the load below comes after it.
      onStatus: (status) => {
        this.#noteFeed(status);
        if (subscribed) this.#onStatus(status);
      },
    });
    subscribed = true;
    await this.reload();
  }

  /** Unsubscribes from the feed. The bus stays open (it belongs to the caller). */
  stop(): void {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
  }

  /** The current snapshot. Throws `unavailable` before the first load. */
  get snapshot(): PolicySnapshot {
    if (!this.#snapshot) throw new PhaselockError("unavailable", "policy state not loaded");
    return this.#snapshot;
  }

  /** Every revocation in the snapshot, indexed for `decideAccess`. */
  get revocations(): RevocationIndex {
    return this.#index;
  }

  /** Adds a listener for applied changes; returns a function that removes it. */
  onChange(listener: ChangeListener): () => void {
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  get lastConfirmedAt(): Date | undefined {
    return this.#lastConfirmedAt;
  }

  isFresh(now: Date = this.#clock.now()): boolean {
    if (!this.#lastConfirmedAt) return false;
    return now.getTime() - this.#lastConfirmedAt.getTime() <= this.#staleAfterMs;
  }

  status(now: Date = this.#clock.now()): PolicyStateStatus {
    return {
      version: this.#snapshot?.version ?? null,
      fresh: this.isFresh(now),
      lastConfirmedAt: this.#lastConfirmedAt ?? null,
    };
  }

  /**
   * Reloads from the source. While a reload runs, a call joins it and one more reload follows,
   * since the running one may have read before whatever prompted the call.
   */
  reload(): Promise<void> {
    this.#dirty = true;
    return this.#ensureReloading();
  }

  #noteFeed(status: BusStatus): void {
    if (status === "disconnected") this.#feedUp = false;
    else if (status === "connected" || status === "heartbeat") this.#feedUp = true;
  }

  #onStatus(status: BusStatus): void {
    switch (status) {
      case "connected":
      case "gap":
        // Messages may have been lost while the subscription was down, or one was unreadable.
        this.#background(this.reload());
        break;
      case "heartbeat":
        if (this.#consistent()) this.#confirm();
        else if (!this.#active) this.#background(this.#ensureReloading());
        break;
      case "disconnected":
        // Nothing to do: without heartbeats the state goes stale and the next `connected` reloads.
        break;
    }
  }

  #onMessage(msg: ChangeMessage): void {
    const current = this.#snapshot?.version;
    if (current !== undefined && msg.version <= current) return;
    if (current === undefined || this.#active) {
      // The snapshot being loaded may predate this message: keep it to apply on top.
      this.#keep(msg);
      if (current === undefined) {
        // Only after a failed first load (start() is loading otherwise): try again.
        if (this.#unsubscribe && !this.#active) this.#background(this.#ensureReloading());
        return;
      }
    }
    if (msg.version === current + 1) {
      if (!this.#applyNow(msg)) return;
      this.#drain();
      // A change read while the feed is down confirms nothing: the next one could go unheard.
      if (this.#feedUp && this.#consistent()) this.#confirm();
      return;
    }
    // A gap: keep what came ahead of it, reload, then apply it on top.
    this.#keep(msg);
    if (!this.#active) this.#background(this.#ensureReloading());
  }

  /** Applies to the live snapshot; on failure (a bug upstream) falls back to a reload. */
  #applyNow(msg: ChangeMessage): boolean {
    try {
      applyChange(this.#snapshot!, this.#index, msg);
    } catch (err) {
      this.#onError(err);
      this.#background(this.reload());
      return false;
    }
    this.#emit(msg);
    return true;
  }

  /** Applies kept messages that now follow on; outside a reload, forgets those already applied. */
  #drain(): void {
    for (;;) {
      const next = this.#pending.get(this.#snapshot!.version + 1);
      if (!next || !this.#applyNow(next)) break;
    }
    if (!this.#active) this.#forgetApplied();
  }

  #forgetApplied(): void {
    const version = this.#snapshot?.version ?? -1;
    for (const v of this.#pending.keys()) if (v <= version) this.#pending.delete(v);
  }

  #keep(msg: ChangeMessage): void {
    if (this.#pending.size >= MAX_PENDING && !this.#pending.has(msg.version)) {
      // Too far behind to catch up message by message: the next reload reads it all.
      this.#pending.clear();
      this.#dirty = true;
      return;
    }
    this.#pending.set(msg.version, msg);
  }

  #consistent(): boolean {
    return this.#snapshot !== undefined && !this.#dirty && !this.#active && this.#pending.size === 0;
  }

  #confirm(): void {
    this.#lastConfirmedAt = this.#clock.now();
  }

  #ensureReloading(): Promise<void> {
    if (!this.#active) {
      this.#active = true;
      this.#reloading = this.#reloadRounds();
    }
    return this.#reloading;
  }

  async #reloadRounds(): Promise<void> {
    try {
      for (let round = 1; ; round++) {
        this.#dirty = false;
        try {
          const [snapshot] = await Promise.all([this.#source.load(), this.#refreshKeys?.()]);
          this.#install(snapshot);
        } catch (err) {
          this.#dirty = true;
          throw err;
        }
        if (!this.#dirty && this.#pending.size === 0) break;
        // Left for the next heartbeat, message or reconnect to retry.
        if (round >= MAX_RELOAD_ROUNDS) throw new Error("policy source lags the change feed");
      }
      if (this.#feedUp) this.#confirm();
    } finally {
      this.#active = false;
      this.#forgetApplied();
    }
  }

  /** Replaces the snapshot, then applies the kept messages newer than it. */
  #install(loaded: PolicySnapshot): void {
    const index = new RevocationIndex(loaded.revocations);
    // The index is the only copy kept (PolicySnapshot.revocations): 100,000 revocations as
    // objects would stay in the gateway's heap for nothing.
    loaded.revocations = [];
    const previous = this.#snapshot?.version ?? -1;
    const kept = [...this.#pending.values()]
      .filter((m) => m.version > loaded.version)
      .sort((a, b) => a.version - b.version);
    let version = loaded.version;
    for (const msg of kept) {
      if (msg.version !== version + 1) break;
      try {
        applyChange(loaded, index, msg);
      } catch (err) {
        // Unusable (a bug upstream): drop it, so a later reload that includes it can close the gap.
        this.#onError(err);
        this.#pending.delete(msg.version);
        break;
      }
      version = msg.version;
    }
    if (version < previous) {
      // Never step back: what was applied from the feed would be lost.
      throw new Error(`policy source is behind the change feed (${version} < ${previous})`);
    }
    this.#snapshot = loaded;
    this.#index = index;
    for (const msg of kept) if (msg.version <= version) this.#emit(msg);
    this.#emitted = Math.max(this.#emitted, version);
    this.#forgetApplied();
  }

  #emit(msg: ChangeMessage): void {
    if (msg.version <= this.#emitted) return;
    this.#emitted = msg.version;
    for (const l of [...this.#listeners]) {
      try {
        l(msg.change, msg.version);
      } catch (err) {
        this.#onError(err);
      }
    }
  }

  #background(p: Promise<void>): void {
    p.catch((err: unknown) => this.#onError(err));
  }
}

/** Applies one change to a snapshot and its revocation index, in place. */
function applyChange(snapshot: PolicySnapshot, index: RevocationIndex, msg: ChangeMessage): void {
  const c = msg.change;
  switch (c.type) {
    case "revocation":
      index.add(c.revocation);
      break;
    case "contest":
      snapshot.contests.set(c.contest.id, c.contest);
      for (const closure of c.closures ?? []) addClosure(snapshot.closures, closure);
      break;
    case "campaign":
      snapshot.campaigns.set(c.campaign.id, c.campaign);
      break;
    case "entitlement": {
      const phases = snapshot.entitlements.get(c.campaignId);
      if (c.scopes === null) {
        phases?.delete(c.phase);
        if (phases?.size === 0) snapshot.entitlements.delete(c.campaignId);
      } else if (phases) {
        phases.set(c.phase, new Set(c.scopes));
      } else {
        snapshot.entitlements.set(c.campaignId, new Map([[c.phase, new Set(c.scopes)]]));
      }
      break;
    }
    case "link-suspended":
      snapshot.suspended.add(c.linkId);
      break;
    case "signing-key":
    case "signing-key-revoked":
    case "api-key-deleted":
    case "session-ended":
    case "session-rotated":
      // Not part of the snapshot: listeners (key ring, API key and session caches) take them.
      break;
    default:
      // Every type is handled above (the compiler checks it); a future one must be too.
      throw new Error(`unknown change type ${(c satisfies never as { type: string }).type}`);
  }
  snapshot.version = msg.version;
}
