import { type AuditEventInput, MemoryAuditSink } from "@phaselock/audit";
import type { Scope } from "@phaselock/core";
import {
  type Campaign,
  type Contest,
  type LinkClaims,
  type PolicySnapshot,
  RevocationIndex,
} from "@phaselock/policy";
import { MemoryRateLimiter, MemoryRecordQuota } from "@phaselock/state";
import { setup, T0 } from "@phaselock/tokens/testing";
import { Hono } from "hono";
import { createApp } from "./app.ts";
import type { GatewayDeps, LinkStore, PolicyView } from "./deps.ts";
import { parseGatewayEnv } from "./env.ts";
import { createLimits } from "./limits.ts";
import { gatewayAppConfig } from "./service.ts";
import { createInProcessUpstream, type Upstream } from "./upstream.ts";
import { createUpstreamRoutes } from "./upstream-routes.ts";

export { T0 };

const DAY = 86_400_000;
const at = (ms: number) => new Date(T0.getTime() + ms);

export const UPSTREAM_SECRET = "test-upstream-secret";

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
  add(id: string, maxUses = 5) {
    this.rows.set(id, { uses: 0, maxUses, suspendedAt: null });
  }
  async get(id: string) {
    return this.rows.get(id) ?? null;
  }
  async redeem(id: string) {
    const row = this.rows.get(id);
    if (!row) return { ok: false as const, reason: "not_found" as const };
    if (row.suspendedAt) return { ok: false as const, reason: "suspended" as const };
    if (row.uses >= row.maxUses) return { ok: false as const, reason: "uses_exhausted" as const };
    row.uses++;
    return { ok: true as const, uses: row.uses };
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
  const audit = new MemoryAuditSink();
  let auditHealthy = true;
  audit.healthy = () => auditHealthy;
  const phonebank = opts.phonebank ?? fakePhonebank();
  const deps: GatewayDeps = {
    clock: tokens.clock,
    policy,
    verifier: tokens.verifier,
    links,
    upstream: opts.upstream ?? createInProcessUpstream(phonebank.app),
    routes: createUpstreamRoutes(),
    audit,
    limits: createLimits({ rateLimiter: new MemoryRateLimiter(), recordQuota: new MemoryRecordQuota() }),
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
    links.add(jti, maxUses);
    return tokens.sign({ scp: ["calls:read", "calls:write", "members:read"], ...over, jti });
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
    audit,
    phonebank,
    issue,
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

export const errorCode = async (res: Response): Promise<string> =>
  ((await res.json()) as { error: { code: string } }).error.code;
