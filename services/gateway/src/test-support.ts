import { type AuditEventInput, MemoryAuditSink } from "@phaselock/audit";
import type { Scope } from "@phaselock/core";
import { sha256Hex } from "@phaselock/core";
import type { RedeemOpen } from "@phaselock/db";
import {
  type Campaign,
  type Contest,
  type LinkClaims,
  type PolicySnapshot,
  RevocationIndex,
} from "@phaselock/policy";
import { MemoryRateLimiter, MemoryRecordQuota } from "@phaselock/state";
import { claimsAt, setup, T0 } from "@phaselock/tokens/testing";
import { Hono } from "hono";
import { createApp } from "./app.ts";
import type { GatewayDeps, LinkRecord, LinkStore, PolicyView, SessionRecord, SessionStore } from "./deps.ts";
import { parseGatewayEnv } from "./env.ts";
import { createLimits } from "./limits.ts";
import { gatewayAppConfig } from "./service.ts";
import { createDeviceIds, createSessionCache, credentialHash, newSessionCredential } from "./sessions.ts";
import { createInProcessUpstream, type Upstream } from "./upstream.ts";
import { createUpstreamRoutes } from "./upstream-routes.ts";

export { T0 };

const DAY = 86_400_000;
const at = (ms: number) => new Date(T0.getTime() + ms);

export const UPSTREAM_SECRET = "test-upstream-secret-at-least-32-chars";

/** leadership-2020: nominations just over (no member data), ballot running; ge-2019 long over. */
export function demoSnapshot(): PolicySnapshot {
  const contests: Contest[] = [
    {
      id: "leadership-2020",
      name: "Leadership election 2020",
      phases: [
        { name: "nominations", startsAt: at(-14 * DAY), endsAt: at(-DAY), memberData: false },
        { name: "ballot", startsAt: at(-DAY), endsAt: at(21 * DAY), memberData: true },
        { name: "hustings", startsAt: at(21 * DAY), endsAt: at(30 * DAY), memberData: true },
      ],
    },
    {
      id: "ge-2019",
      name: "General election 2019",
      phases: [
        {
          name: "campaign",
          startsAt: new Date("2019-11-06T00:00:00Z"),
          endsAt: new Date("2019-12-12T22:00:00Z"),
          memberData: true,
        },
      ],
    },
  ];
  const campaigns: Campaign[] = [
    { id: "starmer-2020", name: "Keir Starmer 2020", contestId: "leadership-2020", limits: {} },
    { id: "long-bailey-2020", name: "Rebecca Long-Bailey 2020", contestId: "leadership-2020", limits: {} },
    { id: "labour-ge-2019", name: "Labour GE 2019", contestId: "ge-2019", limits: {} },
  ];
  const ent = (entries: Record<string, Scope[]>) =>
    new Map(Object.entries(entries).map(([phase, scopes]) => [phase, new Set(scopes)]));
  return {
    version: 1,
    contests: new Map(contests.map((c) => [c.id, c])),
    campaigns: new Map(campaigns.map((c) => [c.id, c])),
    entitlements: new Map([
      [
        "starmer-2020",
        ent({ ballot: ["calls:read", "calls:write", "members:read"], hustings: ["calls:read"] }),
      ],
      ["long-bailey-2020", ent({ ballot: ["calls:read"] })],
      ["labour-ge-2019", ent({ campaign: ["calls:read", "calls:write", "members:read"] })],
    ]),
    revocations: [],
    suspended: new Set(),
    closures: new Map(),
  };
}

/** A fake phone bank that sends more than a volunteer needs and records what reached it. */
export function fakePhonebank() {
  const seen: Array<{ method: string; path: string; headers: Headers }> = [];
  const member = (id: string) => ({
    id,
    name: "Alex Example",
    phone: "07700 900123",
    ward: "Central",
    constituency: "Exampleton",
    email: "alex@example.invalid",
    dateOfBirth: "1970-01-01",
    address: "1 Example Street",
  });
  const app = new Hono();
  app.use(async (c, next) => {
    seen.push({
      method: c.req.method,
      path: new URL(c.req.url).pathname,
      headers: new Headers(c.req.raw.headers),
    });
    await next();
  });
  let n = 0;
  // A cookie of its own, which the gateway must never pass on to the volunteer.
  app.get("/", (c) => c.html("<h1>calling page</h1>", 200, { "set-cookie": "pb_session=1; Path=/" }));
  app.get("/calls/next", (c) => {
    n++;
    return c.json({ call: { id: `c_${n}`, member: member(`m_${String(n).padStart(6, "0")}`) } });
  });
  app.post("/calls/:id/outcome", async (c) => c.json({ ok: true, id: c.req.param("id") }, 201));
  app.get("/members/export", (c) => c.text('{"id":"m_1","email":"alex@example.invalid"}\n'));
  app.get("/members/:id", (c) => c.json(member(c.req.param("id"))));
  return { app, seen };
}

export class MemoryLinks implements LinkStore {
  readonly rows = new Map<string, { uses: number; maxUses: number; suspendedAt: Date | null }>();
  readonly records = new Map<string, LinkRecord>();
  /** sha256(code) -> link id: the short links (only the hash, as in the database) */
  readonly codes = new Map<string, string>();
  add(id: string, maxUses = 5, record?: LinkRecord) {
    this.rows.set(id, { uses: 0, maxUses, suspendedAt: null });
    if (record) this.records.set(id, record);
  }
  async get(id: string) {
    const row = this.rows.get(id);
    return row ? { ...row, kid: this.records.get(id)?.kid ?? "" } : null;
  }
  async getByCodeHash(codeHash: string) {
    const id = this.codes.get(codeHash);
    return id === undefined ? null : (this.records.get(id) ?? null);
  }
  /** The sessions a redemption opens (and whose devices it counts), set by the fixture. */
  sessions: MemorySessions | undefined;
  async redeem(id: string, now: Date, open: RedeemOpen) {
    const row = this.rows.get(id);
    if (!row) return { ok: false as const, reason: "not_found" as const };
    // As under the link row's lock: no await between this look and the count below.
    for (const s of this.sessions?.rows.values() ?? []) {
      if (s.linkId === id && s.deviceId === open.session.deviceId && s.endedAt === null && s.expiresAt > now)
        return {
          ok: false as const,
          reason: "live_session" as const,
          session: { id: s.id, expiresAt: s.expiresAt },
        };
    }
    if (row.suspendedAt) return { ok: false as const, reason: "suspended" as const };
    if (row.uses >= row.maxUses) return { ok: false as const, reason: "uses_exhausted" as const };
    const others = new Set<string>();
    for (const s of this.sessions?.rows.values() ?? []) {
      if (s.linkId === id && s.deviceId !== open.session.deviceId) others.add(s.deviceId);
    }
    if (open.maxDevices !== undefined && others.size >= open.maxDevices)
      return { ok: false as const, reason: "too_many_devices" as const };
    row.uses++;
    await this.sessions?.open(open.session);
    return { ok: true as const, uses: row.uses };
  }
}

/** The sessions table in memory (credentials by their sha256 only, as in Postgres). */
export class MemorySessions implements SessionStore {
  readonly rows = new Map<string, SessionRecord & { tokenHash: string }>();
  queries = 0;
  readonly #links: MemoryLinks;
  constructor(links: MemoryLinks) {
    this.#links = links;
  }
  async resolve(tokenHash: string) {
    this.queries++;
    for (const s of this.rows.values()) {
      if (s.tokenHash !== tokenHash) continue;
      const link = this.#links.records.get(s.linkId);
      if (!link) return null;
      const { tokenHash: _h, ...session } = s;
      return { session, link };
    }
    return null;
  }
  async findLive(linkId: string, deviceId: string, now: Date) {
    for (const s of this.rows.values()) {
      if (s.linkId === linkId && s.deviceId === deviceId && s.endedAt === null && s.expiresAt > now) {
        const { tokenHash: _h, ...session } = s;
        return session;
      }
    }
    return null;
  }
  async open(s: RedeemOpen["session"]) {
    this.rows.set(s.id, { ...s, endedAt: null });
  }
  async rotate(id: string, tokenHash: string, now: Date) {
    const s = this.rows.get(id);
    if (!s || s.endedAt !== null || s.expiresAt <= now) return false;
    s.tokenHash = tokenHash;
    return true;
  }
  version = 1;
  async end(tokenHash: string, _reason: string, now: Date) {
    for (const s of this.rows.values()) {
      if (s.tokenHash === tokenHash && s.endedAt === null) {
        s.endedAt = now;
        return { id: s.id, version: ++this.version };
      }
    }
    return null;
  }
}

/** A gateway over in-memory state, a fake clock at T0 and an in-process fake phone bank. */
export async function gatewayFixture(
  opts: { upstream?: Upstream; phonebank?: ReturnType<typeof fakePhonebank> } = {},
) {
  const tokens = await setup();
  const snapshot = demoSnapshot();
  const revocations = new RevocationIndex();
  let fresh = true;
  const policy: PolicyView = {
    snapshot: () => snapshot,
    revocations: () => revocations,
    isFresh: () => fresh,
  };
  const links = new MemoryLinks();
  // What would be Redis in production: limits, quotas and (before 2026-12-02) device counts.
  const recordQuota = new MemoryRecordQuota();
  const audit = new MemoryAuditSink();
  let auditHealthy = true;
  audit.healthy = () => auditHealthy;
  const phonebank = opts.phonebank ?? fakePhonebank();
  const sessionStore = new MemorySessions(links);
  links.sessions = sessionStore;
  const sessionCache = createSessionCache({
    store: sessionStore,
    version: () => snapshot.version,
    nowMs: () => tokens.clock.now().getTime(),
  });
  const deviceKey = Buffer.from("test-device-key-test-device-key!");
  const deps: GatewayDeps = {
    clock: tokens.clock,
    policy,
    verifier: tokens.verifier,
    links,
    sessions: {
      resolve: (h) => sessionCache.resolve(h),
      findLive: (...a) => sessionStore.findLive(...a),
      rotate: (...a) => sessionCache.rotate(...a),
      end: (...a) => sessionStore.end(...a),
    },
    endSession: async (tokenHash, now) => {
      const r = await sessionStore.end(tokenHash, "signed out", now);
      sessionCache.drop(tokenHash);
      if (r) snapshot.version = Math.max(snapshot.version, r.version);
      return r !== null;
    },
    devices: createDeviceIds(() => deviceKey),
    keyKnown: (kid) => tokens.ring.has(kid),
    upstream: opts.upstream ?? createInProcessUpstream(phonebank.app),
    routes: createUpstreamRoutes(),
    audit,
    limits: createLimits({ rateLimiter: new MemoryRateLimiter(), recordQuota }),
    // The settings as the builder derives them from the environment main.ts parses.
    config: gatewayAppConfig(
      parseGatewayEnv({ PHONEBANK_SECRET: UPSTREAM_SECRET, AUDIT_IP_KEY: "k", MAX_BODY_BYTES: "1024" }),
    ),
    seen: () => {},
    suspendLink: async (linkId) => {
      snapshot.suspended.add(linkId);
      const row = links.rows.get(linkId);
      if (row) row.suspendedAt = new Date();
    },
  };
  const app = createApp(deps);

  /** Signs a link and registers it as issued. */
  const issue = async (over: Partial<LinkClaims> = {}, maxUses = 5) => {
    const jti = over.jti ?? `lnk_${Math.random().toString(36).slice(2)}`;
    const claims = claimsAt({ scp: ["calls:read", "calls:write", "members:read"], ...over, jti });
    links.add(jti, maxUses, {
      id: jti,
      campaignId: claims.cmp,
      contestId: claims.cst,
      phase: claims.phs,
      volunteerRef: claims.sub,
      scopes: claims.scp,
      notBefore: new Date(claims.nbf * 1000),
      expiresAt: new Date(claims.exp * 1000),
      issuedAt: new Date(claims.iat * 1000),
      kid: tokens.key.kid,
    });
    return tokens.sign(claims);
  };
  /** Issues a link and gives it a short code (only its hash kept): the code. */
  const issueCode = async (over: Partial<LinkClaims> = {}, maxUses = 5) => {
    const jti = over.jti ?? `lnk_${Math.random().toString(36).slice(2)}`;
    await issue({ ...over, jti }, maxUses);
    const code = randomCode();
    links.codes.set(sha256Hex(code), jti);
    return { code, jti };
  };
  /** Redeems a link as a script would (JSON): the session credential. */
  const redeem = async (token: string, headers: Record<string, string> = {}): Promise<string> => {
    const res = await app.request(`/l/${token}`, {
      method: "POST",
      headers: { accept: "application/json", ...headers },
    });
    if (res.status !== 201) throw new Error(`redeem answered ${res.status}`);
    return ((await res.json()) as { session: string }).session;
  };
  /**
   * A session of an issued link, stored as a redemption would store it but without the checks, so
   * a test can open one on a link that could not be redeemed now (then check what /pb answers).
   */
  const openSession = async (jti: string): Promise<string> => {
    const link = links.records.get(jti);
    if (!link) throw new Error(`no link ${jti}`);
    const credential = newSessionCredential();
    const now = tokens.clock.now();
    await sessionStore.open({
      id: `ses_${Math.random().toString(36).slice(2)}`,
      tokenHash: credentialHash(credential),
      linkId: jti,
      deviceId: "dev_test",
      createdAt: now,
      expiresAt: new Date(Math.min(now.getTime() + 43_200_000, link.expiresAt.getTime())),
    });
    return credential;
  };
  /** Issues a link and opens a session of it: the session credential. */
  const session = async (over: Partial<LinkClaims> = {}, maxUses = 5) => {
    const jti = over.jti ?? `lnk_${Math.random().toString(36).slice(2)}`;
    await issue({ ...over, jti }, maxUses);
    return openSession(jti);
  };
  const get = (path: string, headers: Record<string, string> = {}) => app.request(path, { headers });
  const bearer = (token: string, path = "/pb/calls/next", init: RequestInit = {}) =>
    app.request(path, { ...init, headers: { authorization: `Bearer ${token}`, ...(init.headers ?? {}) } });
  const events = (): AuditEventInput[] => audit.events;

  return {
    ...tokens,
    app,
    deps,
    snapshot,
    revocations,
    suspended: snapshot.suspended,
    links,
    recordQuota,
    audit,
    phonebank,
    issue,
    issueCode,
    redeem,
    session,
    openSession,
    sessionStore,
    sessionCache,
    get,
    bearer,
    events,
    setFresh: (v: boolean) => {
      fresh = v;
    },
    setAuditHealthy: (v: boolean) => {
      auditHealthy = v;
    },
  };
}

const randomCode = () => Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64url");

export const errorCode = async (res: Response): Promise<string> =>
  ((await res.json()) as { error: { code: string } }).error.code;
