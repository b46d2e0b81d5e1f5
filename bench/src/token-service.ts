import { randomBytes } from "node:crypto";
import { BatchAuditWriter } from "@phaselock/audit";
import { type Clock, systemClock } from "@phaselock/core";
import { createRepos, type Db } from "@phaselock/db";
import { type ChangeBus, MemoryBus } from "@phaselock/state";
import { createApp, KeyManager, type Logger } from "@phaselock/token-service";

export const ISSUER = "http://127.0.0.1:4000";
export const PUBLIC_GATEWAY = "http://127.0.0.1:8080";
export const CONTEST = "bench-2026";
export const PHASE = "ballot";
export const CAMPAIGN = "bench-campaign";
export const SCOPES = ["calls:read", "calls:write", "members:read"];

const silent: Logger = { info: () => {}, warn: () => {}, error: () => {} };

/** A link as `POST /v1/links` and `/v1/links/batch` answer it. */
export interface IssuedLink {
  id: string;
  url: string;
  token: string;
}

/**
 * The token service app over `db`, wired as its `main.ts` wires it (key manager, batching audit
 * writer, change feed), driven in process through `app.request`.
 */
export async function createTokenService(db: Db, opts: { bus?: ChangeBus; clock?: Clock } = {}) {
  const clock = opts.clock ?? systemClock;
  const bus = opts.bus ?? new MemoryBus();
  const repos = createRepos(db);
  const keys = new KeyManager({
    signingKeys: repos.signingKeys,
    kek: new Uint8Array(randomBytes(32)),
    clock,
  });
  const ensured = await keys.ensureActiveKey();
  if (ensured.created) {
    const { version, kid, publicJwk } = ensured.created;
    await bus.publish({ version, change: { type: "signing-key", kid, publicJwk: { ...publicJwk } } });
  }
  const audit = new BatchAuditWriter({ db, clock });
  const adminToken = `pla_${randomBytes(32).toString("base64url")}`;
  const app = createApp({
    db,
    repos,
    keys,
    clock,
    bus,
    audit,
    config: { issuer: ISSUER, publicGatewayUrl: PUBLIC_GATEWAY, adminToken },
    logger: silent,
  });

  /** An admin call; throws unless the answer is 2xx. */
  async function call<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await app.request(path, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (res.status >= 300) throw new Error(`token service: ${method} ${path} answered ${res.status} ${text}`);
    return (text ? JSON.parse(text) : null) as T;
  }

  /**
   * The bench contest (phase `ballot` running now for 30 days) and campaign, entitled to the
   * member-data scopes, with per-link limits raised so the load is never rate-limited.
   */
  async function seed(now: Date = clock.now()): Promise<void> {
    const day = 86_400_000;
    await call("PUT", `/v1/contests/${CONTEST}`, {
      name: "Bench contest",
      phases: [
        {
          name: PHASE,
          startsAt: new Date(now.getTime() - day).toISOString(),
          endsAt: new Date(now.getTime() + 30 * day).toISOString(),
          memberData: true,
        },
      ],
    });
    await call("PUT", `/v1/campaigns/${CAMPAIGN}`, {
      name: "Bench campaign",
      contestId: CONTEST,
      limits: { requestsPerMinute: 1_000_000, recordsPerHour: 1_000_000 },
    });
    await call("PUT", `/v1/campaigns/${CAMPAIGN}/entitlements/${PHASE}`, { scopes: SCOPES });
  }

  async function issueLink(ref: string): Promise<IssuedLink> {
    return call<IssuedLink>("POST", "/v1/links", {
      campaignId: CAMPAIGN,
      phase: PHASE,
      volunteer: { ref },
      scopes: SCOPES,
      ttlSeconds: 86_400,
      maxUses: 100,
    });
  }

  async function issueBatch(prefix: string, n: number): Promise<IssuedLink[]> {
    const volunteers = Array.from({ length: n }, (_, i) => ({
      ref: `${prefix}-${i}`,
      name: `Volunteer ${i}`,
    }));
    const r = await call<{ links: IssuedLink[] }>("POST", "/v1/links/batch", {
      campaignId: CAMPAIGN,
      phase: PHASE,
      volunteers,
      scopes: SCOPES,
      ttlSeconds: 86_400,
    });
    return r.links;
  }

  return {
    app,
    keys,
    audit,
    bus,
    call,
    seed,
    issueLink,
    issueBatch,
    /** Writes the queued audit events and stops the writer (the bus belongs to the caller when passed). */
    close: async () => {
      await audit.close();
      if (!opts.bus) await bus.close();
    },
  };
}

export type TokenService = Awaited<ReturnType<typeof createTokenService>>;
