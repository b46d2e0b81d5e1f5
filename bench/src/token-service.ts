import { randomBytes } from "node:crypto";
import { type Clock, systemClock } from "@phaselock/core";
import type { Db } from "@phaselock/db";
import { type ChangeBus, MemoryBus } from "@phaselock/state";
import {
  createTokenService as buildTokenService,
  type Logger,
  parseTokenServiceEnv,
} from "@phaselock/token-service";

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
 * The token service over `db`, from the builder its `main.ts` uses (key manager, batching audit
 * writer, change feed), driven in process through `app.request`.
 */
export async function createTokenService(
  db: Db,
  opts: { bus?: ChangeBus; clock?: Clock; adminToken?: string } = {},
) {
  const clock = opts.clock ?? systemClock;
  const bus = opts.bus ?? new MemoryBus();
  const adminToken = opts.adminToken ?? newAdminToken();
  const service = buildTokenService(
    parseTokenServiceEnv({
      TOKEN_SERVICE_URL: ISSUER,
      PUBLIC_GATEWAY_URL: PUBLIC_GATEWAY,
      ADMIN_TOKEN: adminToken,
      KEY_ENCRYPTION_KEY: randomBytes(32).toString("hex"),
    }),
    { db, stores: { bus }, clock, logger: silent },
  );
  await service.start();
  const { app, keys, audit } = service;

  const client = adminClient((path, init) => Promise.resolve(app.request(path, init)), adminToken);
  return {
    app,
    keys,
    audit,
    bus,
    ...client,
    /** Writes the queued audit events and stops the writer (the bus belongs to the caller when passed). */
    close: async () => {
      await service.stop();
      if (!opts.bus) await bus.close();
    },
  };
}

export const newAdminToken = (): string => `pla_${randomBytes(32).toString("base64url")}`;

/** The admin calls the benches make, over `app.request` (in process) or HTTP (another process). */
export function adminClient(
  send: (path: string, init: RequestInit) => Promise<Response>,
  adminToken: string,
  clock: Clock = systemClock,
) {
  /** An admin call; throws unless the answer is 2xx. */
  async function call<T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await send(path, {
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

  return { call, seed, issueLink, issueBatch };
}

/** A token service running in another process, at `baseUrl`. */
export const remoteTokenService = (baseUrl: string, adminToken: string) =>
  adminClient((path, init) => fetch(`${baseUrl}${path}`, init), adminToken);

export type TokenService = Awaited<ReturnType<typeof createTokenService>>;
