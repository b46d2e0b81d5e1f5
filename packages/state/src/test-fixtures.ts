// Builders shared by this package's tests (not exported from the package).
import type { Campaign, Contest, LinkClaims, PolicySnapshot, Revocation } from "@phaselock/policy";
import type { ChangeMessage, PolicyChange } from "./changes.ts";

export const T0 = new Date("2020-03-01T12:00:00Z");

export const contest = (id = "leadership-2020"): Contest => ({
  id,
  name: "Leadership 2020",
  phases: [
    { name: "nominations", startsAt: new Date("2020-01-01T00:00:00Z"), endsAt: T0, memberData: false },
    { name: "ballot", startsAt: T0, endsAt: new Date("2020-04-04T00:00:00Z"), memberData: true },
  ],
});

export const campaign = (id = "starmer-2020"): Campaign => ({
  id,
  name: id,
  contestId: "leadership-2020",
  limits: { requestsPerMinute: 60 },
});

export const linkRevocation = (linkId: string, id = `rev_${linkId}`): Revocation => ({
  id,
  scope: "link",
  linkId,
  reason: "lost phone",
  actor: "admin",
  effectiveAt: T0,
  createdAt: T0,
});

export const claims = (jti: string): LinkClaims => ({
  iss: "http://127.0.0.1:4000",
  aud: "phaselock-gateway",
  sub: "vol-1",
  jti,
  iat: Math.floor(T0.getTime() / 1000) - 60,
  nbf: Math.floor(T0.getTime() / 1000) - 60,
  exp: Math.floor(T0.getTime() / 1000) + 3600,
  cmp: "starmer-2020",
  cst: "leadership-2020",
  phs: "ballot",
  scp: ["calls:read"],
});

/** A snapshot at `version`, holding the given revocations; fresh maps on every call. */
export function snapshot(version: number, revocations: Revocation[] = []): PolicySnapshot {
  return {
    version,
    contests: new Map([["leadership-2020", contest()]]),
    campaigns: new Map([["starmer-2020", campaign()]]),
    entitlements: new Map([["starmer-2020", new Map([["ballot", new Set(["calls:read" as const])]])]]),
    revocations: [...revocations],
    suspended: new Set(),
    closures: new Map(),
  };
}

export const msg = (version: number, change: PolicyChange): ChangeMessage => ({ version, change });

export const revoke = (version: number, linkId: string): ChangeMessage =>
  msg(version, { type: "revocation", revocation: linkRevocation(linkId) });

/** A promise with its resolve and reject exposed, to hold a load open. */
export function deferred<T>(): { promise: Promise<T>; resolve(v: T): void; reject(e: unknown): void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Polls until `check` passes (for real Redis round trips); fails after `timeoutMs`. */
export async function eventually(check: () => void, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/**
 * The Postgres change log in memory: `append` as a policy write's transaction logs its change,
 * `since` as `loadPolicyChanges` reads it (JSON, dates as strings).
 */
export function memoryLog(initialVersion = 1) {
  const rows: Array<{ version: number; change: unknown }> = [];
  let stored = initialVersion;
  return {
    rows,
    append(m: ChangeMessage): void {
      rows.push({ version: m.version, change: JSON.parse(JSON.stringify(m.change)) });
      stored = Math.max(stored, m.version);
    },
    /** A version bump that logged nothing (a reader must notice the hole and reload). */
    bumpWithoutRow(): void {
      stored++;
    },
    async since(after: number) {
      return { stored, changes: rows.filter((r) => r.version > after).map((r) => ({ ...r })) };
    },
  };
}
