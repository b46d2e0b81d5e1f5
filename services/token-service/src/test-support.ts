/**
 * Test wiring: a token service over an in-memory PGlite, a fake clock, an in-process change bus
 * and an in-memory audit sink, driven through `app.request` (no sockets). Used only by tests.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type AuditEvent, appendInTransaction, MemoryAuditSink } from "@phaselock/audit";
import { FakeClock } from "@phaselock/core";
import { type DbHandle, loadPolicyChanges } from "@phaselock/db";
import { createMemoryDb } from "@phaselock/db/testing";
import {
  type BusListener,
  type BusStatus,
  type ChangeMessage,
  decodeLoggedChange,
  MemoryBus,
} from "@phaselock/state";
import { createVerifier, KeyRing } from "@phaselock/tokens";
import type { createApp } from "./app.ts";
import type { AuditJournal, Principal, TokenServiceDeps } from "./context.ts";
import { parseTokenServiceEnv } from "./env.ts";
import type { Logger } from "./errors.ts";
import type { IssueRequest } from "./issuance.ts";
import type { KeyManager } from "./keys.ts";
import { createTokenService } from "./service.ts";

export const ADMIN = `admin-${"x".repeat(40)}`;
export const ISSUER = "http://127.0.0.1:4000";
export const GATEWAY = "http://127.0.0.1:8080";
/** The fake clock's start: inside the `nominations`/`ballot` fixtures below. */
export const T0 = "2020-03-01T12:00:00.000Z";

export interface Harness {
  app: ReturnType<typeof createApp>;
  deps: TokenServiceDeps;
  handle: DbHandle;
  clock: FakeClock;
  bus: MemoryBus;
  audit: MemoryAuditSink;
  keys: KeyManager;
  /** AUDIT_CHECKPOINT_DIR of this service: a fresh temporary folder. */
  checkpointDir: string;
  /** The logged change behind every hint published on the bus, in order. */
  published: ChangeMessage[];
  logs: { level: string; msg: string }[];
  /** Tells the service's feed subscription `status`, as a real feed would. */
  feedStatus(status: BusStatus): void;
  close(): Promise<void>;
}

export const silentLogger = (logs: { level: string; msg: string }[]): Logger => ({
  info: (msg) => void logs.push({ level: "info", msg }),
  warn: (msg) => void logs.push({ level: "warn", msg }),
  error: (msg) => void logs.push({ level: "error", msg }),
});

/**
 * The production journal, also copying each event into `sink` so tests can look at what a change
 * recorded without reading the table. `failAfterAppend` plays a crash between the change's
 * inserts and its commit. The copy is made at the append, not the commit: a change that fails
 * after it (work passed to `beforeCommit`, such as a batch's signing) leaves its rolled-back events
 * here, so a test of that counts the table instead.
 */
export function mirroringJournal(
  sink: MemoryAuditSink,
  opts: { failAfterAppend?: (() => boolean) | undefined; memoryOnly?: boolean | undefined } = {},
) {
  const journal: AuditJournal = {
    append: async (tx, events) => {
      if (events.length === 0) return;
      if (!opts.memoryOnly) await appendInTransaction(tx, events);
      if (opts.failAfterAppend?.()) throw new Error("injected failure before commit");
      for (const e of events) sink.record(e as AuditEvent);
    },
  };
  return journal;
}

/** A fresh service with its own database. */
export async function createHarness(
  opts: {
    handle?: DbHandle;
    adminToken?: string;
    failAfterAppend?: () => boolean;
    /** Keep the service's own events out of the table, for tests that write the chain by hand. */
    memoryOnlyAudit?: boolean;
    /** `KEY_ENCRYPTION_KEY` (hex); two instances on one database share it. Default: random. */
    kek?: string;
  } = {},
): Promise<Harness> {
  const handle = opts.handle ?? (await createMemoryDb());
  const clock = new FakeClock(T0);
  const bus = new MemoryBus({ heartbeatMs: 0 });
  const audit = new MemoryAuditSink();
  const published: ChangeMessage[] = [];
  const logs: { level: string; msg: string }[] = [];
  const listeners: BusListener[] = [];
  const checkpointDir = join(mkdtempSync(join(tmpdir(), "phaselock-cp-")), "checkpoints");
  // The builder main.ts uses, over the settings the same environment parse gives.
  const service = createTokenService(
    parseTokenServiceEnv({
      TOKEN_SERVICE_URL: ISSUER,
      PUBLIC_GATEWAY_URL: GATEWAY,
      ADMIN_TOKEN: opts.adminToken ?? ADMIN,
      KEY_ENCRYPTION_KEY: opts.kek ?? randomBytes(32).toString("hex"),
      AUDIT_CHECKPOINT_DIR: checkpointDir,
    }),
    {
      db: handle.db,
      stores: {
        bus: {
          // The bus carries only versions: look each one up in the log, before the route answers.
          publish: async (hint) => {
            await bus.publish(hint);
            const { changes } = await loadPolicyChanges(handle.db, hint.version - 1, 1);
            const row = changes[0];
            const m = row?.version === hint.version ? decodeLoggedChange(row) : undefined;
            if (m) published.push(m);
          },
          subscribe: (l) => {
            listeners.push(l);
            return bus.subscribe(l);
          },
          close: () => bus.close(),
        },
      },
      clock,
      audit,
      journal: mirroringJournal(audit, {
        failAfterAppend: opts.failAfterAppend,
        memoryOnly: opts.memoryOnlyAudit,
      }),
      // Tests sign checkpoints by asking for one, never on a wall-clock timer.
      checkpointTimers: { setInterval: () => 0, clearInterval: () => {} },
      logger: silentLogger(logs),
    },
  );
  await service.start();
  const { app, deps, keys } = service;
  return {
    app,
    deps,
    handle,
    clock,
    bus,
    audit,
    keys,
    checkpointDir,
    published,
    logs,
    feedStatus: (status: BusStatus) => {
      for (const l of listeners) l.onStatus(status);
    },
    close: async () => {
      await service.stop();
      await bus.close();
      await handle.close();
    },
  };
}

export interface CallOptions {
  token?: string | null;
  body?: unknown;
  /** Sent as is (for malformed JSON); implies `Content-Type: application/json` unless overridden. */
  rawBody?: string;
  headers?: Record<string, string>;
}

/** A request to the app; `token` defaults to the admin token, `null` sends none. */
export async function call(
  h: Harness,
  method: string,
  path: string,
  opts: CallOptions = {},
): Promise<Response> {
  const headers: Record<string, string> = { ...opts.headers };
  const token = opts.token === undefined ? ADMIN : opts.token;
  if (token !== null) headers.Authorization = `Bearer ${token}`;
  let body: string | undefined;
  if (opts.rawBody !== undefined) body = opts.rawBody;
  else if (opts.body !== undefined) body = JSON.stringify(opts.body);
  if (body !== undefined && !Object.keys(headers).some((k) => k.toLowerCase() === "content-type")) {
    headers["Content-Type"] = "application/json";
  }
  return h.app.request(path, { method, headers, ...(body !== undefined ? { body } : {}) });
}

/** Calls and parses JSON, asserting nothing: tests check `status` and `body`. */
export async function callJson<T = Record<string, unknown>>(
  h: Harness,
  method: string,
  path: string,
  opts: CallOptions = {},
): Promise<{ status: number; body: T; res: Response }> {
  const res = await call(h, method, path, opts);
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : null) as T, res };
}

let seq = 0;
/** A unique id for this process, so tests in one file never collide. */
export const uid = (prefix: string): string => `${prefix}-${process.pid}-${++seq}`;

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const at = (ms: number): string => new Date(new Date(T0).getTime() + ms).toISOString();

/**
 * A contest around T0: `campaign` (ended, memberData), `nominations` (current, no member data),
 * `ballot` (starts in 10 days, memberData), and a campaign entitled to calls:* and members:read
 * in every phase.
 */
export async function seedContest(h: Harness, opts: { entitled?: string[] } = {}) {
  const contestId = uid("contest");
  const campaignId = uid("campaign");
  const phases = [
    { name: "campaign", startsAt: at(-30 * DAY), endsAt: at(-20 * DAY), memberData: true },
    { name: "nominations", startsAt: at(-DAY), endsAt: at(10 * DAY), memberData: false },
    { name: "ballot", startsAt: at(10 * DAY), endsAt: at(40 * DAY), memberData: true },
  ];
  await expectOk(call(h, "PUT", `/v1/contests/${contestId}`, { body: { name: "Leadership 2020", phases } }));
  await expectOk(call(h, "PUT", `/v1/campaigns/${campaignId}`, { body: { name: "Campaign", contestId } }));
  const scopes = opts.entitled ?? ["calls:read", "calls:write", "members:read"];
  for (const phase of ["campaign", "nominations", "ballot"]) {
    await expectOk(call(h, "PUT", `/v1/campaigns/${campaignId}/entitlements/${phase}`, { body: { scopes } }));
  }
  return { contestId, campaignId, phases };
}

/**
 * A contest whose current phase (`open`, memberData) runs from a day before T0 to 30 days after,
 * with an entitled campaign: the common case for issuance tests.
 */
export async function seedOpen(h: Harness, opts: { entitled?: string[] } = {}) {
  const contestId = uid("contest");
  const campaignId = uid("campaign");
  const phases = [{ name: "open", startsAt: at(-DAY), endsAt: at(30 * DAY), memberData: true }];
  await expectOk(call(h, "PUT", `/v1/contests/${contestId}`, { body: { name: "Open contest", phases } }));
  await expectOk(call(h, "PUT", `/v1/campaigns/${campaignId}`, { body: { name: "Campaign", contestId } }));
  const scopes = opts.entitled ?? ["calls:read", "calls:write", "members:read"];
  await expectOk(call(h, "PUT", `/v1/campaigns/${campaignId}/entitlements/open`, { body: { scopes } }));
  return { contestId, campaignId, phaseEndsAt: at(30 * DAY) };
}

export async function createKey(
  h: Harness,
  role: string,
  campaignId?: string,
): Promise<{ id: string; key: string }> {
  const res = await callJson<{ id: string; key: string }>(h, "POST", "/v1/api-keys", {
    body: campaignId ? { role, campaignId } : { role },
  });
  if (res.status !== 201) throw new Error(`api key not created: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

async function expectOk(p: Promise<Response>): Promise<void> {
  const res = await p;
  if (res.status >= 300) throw new Error(`setup call failed: ${res.status} ${await res.text()}`);
}

/** A verifier that trusts the service's JWKS as published now. */
export async function verifierFor(h: Harness) {
  const res = await call(h, "GET", "/.well-known/jwks.json", { token: null });
  const ring = await KeyRing.from((await res.json()) as { keys: unknown[] });
  return createVerifier({ keys: ring, issuer: ISSUER, clock: h.clock });
}

/** Decodes a compact JWS part without verifying (for asserting on headers and claims). */
export const decodePart = (token: string, part: 0 | 1): Record<string, unknown> =>
  JSON.parse(Buffer.from(token.split(".")[part]!, "base64url").toString("utf8"));

/** The admin, as the admin token authenticates: for calling issuance without a request. */
export const ADMIN_PRINCIPAL: Principal = { role: "admin", actor: "admin", campaignId: null };

/** A request for one link per ref in phase `open` of `seedOpen`'s contest. */
export const openPhaseRequest = (campaignId: string, refs: string[]): IssueRequest => ({
  campaignId,
  phase: "open",
  scopes: ["calls:read"],
  ttlSeconds: 3600,
  maxUses: 2,
  volunteers: refs.map((ref) => ({ ref })),
});
