/**
 * The proxy comparison: every server in its own process, load from another (autocannon), the
 * systems alternated round by round so a noisy machine hurts all of them alike.
 */
import { randomBytes } from "node:crypto";
import { cp, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { sql } from "drizzle-orm";
import { decodeJwt, exportSPKI, generateKeyPair, importJWK, type JWK, SignJWT } from "jose";
import { createScratchDb, dropRedisPrefix } from "./db.ts";
import { cpuSince, hostCpu } from "./host-cpu.ts";
import type { LoadResult } from "./ipc.ts";
import { Child } from "./proc.ts";
import type { BareProxyConfig } from "./servers/bare-proxy.ts";
import type { ExpressProxyConfig } from "./servers/express-proxy.ts";
import type { FastifyProxyConfig } from "./servers/fastify-proxy.ts";
import type { GatewayConfig } from "./servers/gateway.ts";
import type { TokenServiceConfig } from "./servers/token-service.ts";
import type { UpstreamConfig } from "./servers/upstream.ts";
import { median } from "./stats.ts";
import { createTokenService, ISSUER, newAdminToken, remoteTokenService } from "./token-service.ts";

const script = (name: string) => fileURLToPath(new URL(`./servers/${name}.ts`, import.meta.url));

export type SystemKey = "a" | "b" | "c" | "d" | "e" | "f" | "g" | "h" | "i" | "j" | "k";

/** One measured run, with the CPU the proxy's and the upstream's processes spent on it. */
export interface RunResult extends LoadResult {
  /** CPU µs of the system's server process per 2xx answer (the upstream itself for a) */
  cpuUs: number;
  /** CPU µs of the upstream per 2xx answer */
  upstreamCpuUs: number;
  /** CPU µs of the load driver per 2xx answer */
  driverCpuUs: number;
  /** CPU µs of every local Postgres process per 2xx answer (NaN when not measurable here) */
  postgresCpuUs: number;
  /** CPU µs of the local Redis per 2xx answer (NaN when not measurable here) */
  redisCpuUs: number;
  /** the whole machine's busy CPU µs per 2xx answer, every process and the kernel (NaN off Linux) */
  machineCpuUs: number;
  /** share of the machine's CPU time stolen by the hypervisor during the run (NaN off Linux) */
  steal: number;
}

export interface SystemResult {
  key: SystemKey;
  label: string;
  runs: RunResult[];
  /** medians over the rounds */
  rps: number;
  p50: number;
  p99: number;
  rpsMin: number;
  rpsMax: number;
  /** medians over the rounds */
  cpuUs: number;
  upstreamCpuUs: number;
  driverCpuUs: number;
  postgresCpuUs: number;
  redisCpuUs: number;
  machineCpuUs: number;
  non2xx: number;
  errors: number;
  statuses: Record<string, number>;
}

export interface ProxyBenchOptions {
  rounds: number;
  /** seconds per system per round */
  duration: number;
  /** seconds per system before the first round, not counted */
  warmup: number;
  connections: number;
  /** Postgres admin URL, or undefined for PGlite */
  adminUrl: string | undefined;
  /** Redis for the production shape (limits, quota, change feed); undefined: in process */
  redisUrl: string | undefined;
  /** write a CPU profile of the (audit on) gateway, over the measured rounds, to this file */
  profilePath?: string | undefined;
  /** only these systems (for working on one of them); default all */
  systems?: SystemKey[] | undefined;
  log: (line: string) => void;
}

export interface ProxyBenchResult {
  systems: SystemResult[];
  database: string;
  notes: string[];
  gatewayStats: Record<string, unknown>;
}

interface System {
  key: SystemKey;
  label: string;
  /** the process that answers this system's requests */
  server: Child;
  url: string;
  headers: Record<string, string>;
  /** what a correct answer looks like */
  expectMinimised: boolean;
}

export const SYSTEM_LABELS: Record<SystemKey, string> = {
  a: "(a) demo upstream, direct",
  b: "(b) bare node:http keep-alive proxy",
  c: "(c) Phaselock gateway, Bearer session",
  d: "(d) Phaselock gateway, session cookie",
  e: "(e) express + express-jwt + http-proxy-middleware",
  f: "(f) Phaselock gateway, audit on (Bearer)",
  g: "(g) Phaselock gateway, audit off (Bearer)",
  h: "(h) fastify 5 + @fastify/jwt + @fastify/reply-from",
  i: "(i) Phaselock gateway, in-process stores (Bearer)",
  j: "(j) Phaselock gateway, audit on, head re-read per batch (before 2026-12-01)",
  k: "(k) Phaselock gateway, audit off, leased meter (not the default)",
};

export async function runProxyBench(o: ProxyBenchOptions): Promise<ProxyBenchResult> {
  const notes: string[] = [];
  // A profile names source files only when the profiled gateway (c, d) runs from its sources (a
  // bundle is one file); otherwise it runs as deployed, bundled, as every other gateway does.
  const asDeployed = !o.profilePath;
  if (!asDeployed)
    notes.push(
      "With --profile the profiled gateway (c, d) ran from its TypeScript sources, not bundled, so the profile names modules; every other gateway ran bundled.",
    );
  const children: Child[] = [];
  const db = await createScratchDb("proxy", o.adminUrl);
  const copies: string[] = [];
  const redisPrefix = `pl:bench:${randomBytes(6).toString("hex")}:`;
  const redis = o.redisUrl ? { redisUrl: o.redisUrl, redisPrefix } : {};
  try {
    // Policy data through the token service's own API, as an operator would set it up: in a
    // process of its own on Postgres (production shape), in this one on PGlite (one process only).
    let link: { token: string };
    let jwks: { keys: JWK[] };
    if (db.kind === "postgres") {
      const adminToken = newAdminToken();
      const tsChild = await Child.start<TokenServiceConfig>(
        { name: "token service", script: script("token-service"), bundle: true },
        { databaseUrl: db.url!, adminToken, ...redis },
      );
      children.push(tsChild);
      const tsUrl = `http://127.0.0.1:${tsChild.port}`;
      const ts = remoteTokenService(tsUrl, adminToken);
      await ts.seed();
      link = await ts.issueLink("bench-volunteer-1");
      jwks = (await (await fetch(`${tsUrl}/.well-known/jwks.json`)).json()) as { keys: JWK[] };
    } else {
      const ts = await createTokenService(db.handle.db);
      await ts.seed();
      link = await ts.issueLink("bench-volunteer-1");
      jwks = (await (await ts.app.request("/.well-known/jwks.json")).json()) as { keys: JWK[] };
      await ts.close();
    }
    const signingJwk = jwks.keys.find((k) => k.kid === decodeJwtHeaderKid(link.token)) ?? jwks.keys[0]!;
    const edPem = await exportSPKI(
      (await importJWK(signingJwk, "EdDSA", { extractable: true })) as Parameters<typeof exportSPKI>[0],
    );

    let gatewayDb: Pick<GatewayConfig, "databaseUrl" | "dataDir">;
    let gatewayDbOn: Pick<GatewayConfig, "databaseUrl" | "dataDir">;
    let gatewayDbOff: Pick<GatewayConfig, "databaseUrl" | "dataDir">;
    let gatewayDbLocal: Pick<GatewayConfig, "databaseUrl" | "dataDir">;
    let gatewayDbBefore: Pick<GatewayConfig, "databaseUrl" | "dataDir">;
    let gatewayDbLeased: Pick<GatewayConfig, "databaseUrl" | "dataDir">;
    if (db.kind === "postgres") {
      gatewayDb = { databaseUrl: db.url! };
      gatewayDbOn = gatewayDb;
      gatewayDbOff = gatewayDb;
      gatewayDbLocal = gatewayDb;
      gatewayDbBefore = gatewayDb;
      gatewayDbLeased = gatewayDb;
    } else {
      // PGlite is single-process: each gateway child opens its own copy of the seeded directory.
      await db.close();
      for (const suffix of ["on", "off", "local", "before", "leased"]) {
        const dir = `${db.dataDir!}-${suffix}`;
        copies.push(dir);
        await cp(db.dataDir!, dir, { recursive: true });
      }
      gatewayDb = { dataDir: db.dataDir! };
      gatewayDbOn = { dataDir: copies[0]! };
      gatewayDbOff = { dataDir: copies[1]! };
      gatewayDbLocal = { dataDir: copies[2]! };
      gatewayDbBefore = { dataDir: copies[3]! };
      gatewayDbLeased = { dataDir: copies[4]! };
    }

    // express-jwt cannot verify EdDSA (jsonwebtoken 9 has no Ed25519): an ES256 twin of the link.
    const claims = decodeJwt(link.token);
    const es = await generateKeyPair("ES256", { extractable: true });
    const esToken = await new SignJWT(claims)
      .setProtectedHeader({ alg: "ES256", typ: "pbl+jwt", kid: "bench-es256" })
      .sign(es.privateKey);
    const esPem = await exportSPKI(es.publicKey);

    const secret = randomBytes(32).toString("base64url");
    o.log(`  starting the servers (${db.describe})`);
    const upstream = await Child.start<UpstreamConfig>(
      { name: "upstream", script: script("upstream") },
      { secret },
    );
    children.push(upstream);
    const upstreamUrl = `http://127.0.0.1:${upstream.port}`;
    const gatewayBase = {
      upstreamUrl,
      issuer: ISSUER,
      phonebankSecret: secret,
      ipHashKey: randomBytes(32).toString("base64url"),
    };
    const [bare, gw, gwOn, gwOff, gwLocal, gwBefore, gwLeased, express, fastify, driver] = await Promise.all([
      Child.start<BareProxyConfig>(
        { name: "bare proxy", script: script("bare-proxy") },
        { upstreamPort: upstream.port },
      ),
      Child.start<GatewayConfig>(
        { name: "gateway", script: script("gateway"), bundle: asDeployed },
        { ...gatewayBase, ...gatewayDb, ...redis, audit: true },
      ),
      Child.start<GatewayConfig>(
        { name: "gateway (audit on)", script: script("gateway"), bundle: true },
        { ...gatewayBase, ...gatewayDbOn, ...redis, audit: true },
      ),
      Child.start<GatewayConfig>(
        { name: "gateway (audit off)", script: script("gateway"), bundle: true },
        { ...gatewayBase, ...gatewayDbOff, ...redis, audit: false },
      ),
      Child.start<GatewayConfig>(
        { name: "gateway (in-process stores)", script: script("gateway"), bundle: true },
        { ...gatewayBase, ...gatewayDbLocal, audit: true },
      ),
      Child.start<GatewayConfig>(
        { name: "gateway (audit on, head re-read)", script: script("gateway"), bundle: true },
        { ...gatewayBase, ...gatewayDbBefore, ...redis, audit: true, auditRememberHead: false },
      ),
      Child.start<GatewayConfig>(
        { name: "gateway (audit off, leased meter)", script: script("gateway"), bundle: true },
        { ...gatewayBase, ...gatewayDbLeased, ...redis, audit: false, leasedLimits: true },
      ),
      Child.start<ExpressProxyConfig>(
        { name: "express proxy", script: script("express-proxy") },
        {
          upstreamUrl,
          publicKeyPem: esPem,
          issuer: ISSUER,
          audience: "phaselock-gateway",
          phonebankSecret: secret,
        },
      ),
      Child.start<FastifyProxyConfig>(
        { name: "fastify proxy", script: script("fastify-proxy") },
        {
          upstreamUrl,
          publicKeyPem: edPem,
          issuer: ISSUER,
          audience: "phaselock-gateway",
          phonebankSecret: secret,
        },
      ),
      Child.start<Record<string, never>>({ name: "load driver", script: script("load-driver") }, {}),
    ]);
    children.push(bare, gw, gwOn, gwOff, gwLocal, gwBefore, gwLeased, express, fastify, driver);

    // The volunteer presses "Start calling": one redemption gives the session cookie.
    const redeemed = await fetch(`http://127.0.0.1:${gw.port}/l/${link.token}`, {
      method: "POST",
      redirect: "manual",
    });
    const setCookie = redeemed.headers.getSetCookie().find((c) => c.startsWith("pl_session=")) ?? "";
    const cookie = /^(pl_session=[^;]+)/.exec(setCookie)?.[1];
    if (redeemed.status !== 303 || !cookie) {
      throw new Error(`redemption answered ${redeemed.status} without a session cookie`);
    }
    // A link is not a session on /pb: the bearer systems use a session of their own (JSON redemption).
    const opened = await fetch(`http://127.0.0.1:${gw.port}/l/${link.token}`, {
      method: "POST",
      headers: { accept: "application/json" },
    });
    if (opened.status !== 201) throw new Error(`JSON redemption answered ${opened.status}`);
    const { session } = (await opened.json()) as { session: string };

    const direct = {
      "x-phaselock-gateway-secret": secret,
      "x-phaselock-campaign": String(claims.cmp),
      "x-phaselock-volunteer": String(claims.sub),
      "x-phaselock-link": String(claims.jti),
      "x-phaselock-scopes": String(claims.scp),
    };
    const bearer = { authorization: `Bearer ${session}` };
    const at = (c: Child) => `http://127.0.0.1:${c.port}/pb/calls/next`;
    const systems: System[] = [
      {
        key: "a",
        server: upstream,
        url: `${upstreamUrl}/calls/next`,
        headers: direct,
        expectMinimised: false,
      },
      { key: "b", server: bare, url: at(bare), headers: direct, expectMinimised: false },
      { key: "c", server: gw, url: at(gw), headers: bearer, expectMinimised: true },
      { key: "d", server: gw, url: at(gw), headers: { cookie }, expectMinimised: true },
      {
        key: "e",
        server: express,
        url: at(express),
        headers: { authorization: `Bearer ${esToken}` },
        expectMinimised: false,
      },
      { key: "f", server: gwOn, url: at(gwOn), headers: bearer, expectMinimised: true },
      { key: "g", server: gwOff, url: at(gwOff), headers: bearer, expectMinimised: true },
      {
        key: "h",
        server: fastify,
        url: at(fastify),
        headers: { authorization: `Bearer ${link.token}` },
        expectMinimised: false,
      },
      { key: "i", server: gwLocal, url: at(gwLocal), headers: bearer, expectMinimised: true },
      { key: "j", server: gwBefore, url: at(gwBefore), headers: bearer, expectMinimised: true },
      { key: "k", server: gwLeased, url: at(gwLeased), headers: bearer, expectMinimised: true },
    ]
      .map((s) => ({ ...s, key: s.key as SystemKey, label: SYSTEM_LABELS[s.key as SystemKey] }))
      .filter((s) => !o.systems || o.systems.includes(s.key));

    for (const s of systems) await sanityCheck(s);
    notes.push(
      "Every system answered a sanity request with 200 and a call; the gateway's answers are minimised (no email, address or notes).",
    );

    // Postgres and Redis CPU are read from this machine's processes: only for servers on it. With
    // PGlite the database's work is in each gateway's own process.
    const localServers = {
      postgres: db.kind === "postgres" && o.adminUrl !== undefined && onThisHost(o.adminUrl),
      redis: o.redisUrl !== undefined && onThisHost(o.redisUrl),
    };
    const load = async (s: System, duration: number): Promise<RunResult> => {
      const cpus = () => Promise.all([s.server.cpuMicros(), upstream.cpuMicros(), driver.cpuMicros()]);
      const [s0, u0, d0] = await cpus();
      const h0 = await hostCpu();
      const r = await driver.load({ url: s.url, headers: s.headers, connections: o.connections, duration });
      const h = cpuSince(h0, await hostCpu());
      const [s1, u1, d1] = await cpus();
      const per = (d: number) => (r.ok > 0 ? d / r.ok : Number.NaN);
      // A server with no process on this machine (another host) has no figure, not a zero.
      const local = (us: number | undefined, present: boolean) =>
        present && us !== undefined ? per(us) : Number.NaN;
      return {
        ...r,
        cpuUs: per(s1 - s0),
        upstreamCpuUs: per(u1 - u0),
        driverCpuUs: per(d1 - d0),
        postgresCpuUs: local(h?.postgresUs, localServers.postgres),
        redisCpuUs: local(h?.redisUs, localServers.redis),
        machineCpuUs: h ? per(h.busyUs) : Number.NaN,
        steal: h && h.totalUs > 0 ? h.stealUs / h.totalUs : Number.NaN,
      };
    };

    if (o.warmup > 0) {
      o.log(`  warm-up: ${o.warmup} s per system`);
      for (const s of systems) await load(s, o.warmup);
    }
    const runs = new Map<SystemKey, RunResult[]>(systems.map((s) => [s.key, []]));
    if (o.profilePath) {
      notes.push(
        "A CPU profile was recorded in the gateway of (c) and (d) during the rounds: their figures include the profiler's overhead.",
      );
      await gw.profileStart();
    }
    for (let r = 0; r < o.rounds; r++) {
      // Rotate the order each round: no system always follows the same one.
      const order = systems.map((_, i) => systems[(i + r) % systems.length]!);
      for (const s of order) {
        const result = await load(s, o.duration);
        runs.get(s.key)!.push(result);
        o.log(
          `  round ${r + 1}/${o.rounds} ${s.label.padEnd(52)} ${fmt(result.rps, 0).padStart(6)} req/s  p50 ${result.p50} ms  p99 ${result.p99} ms  CPU ${fmt(result.cpuUs, 0)} µs/req (upstream ${fmt(result.upstreamCpuUs, 0)}, Postgres ${fmt(result.postgresCpuUs, 0)}, Redis ${fmt(result.redisCpuUs, 0)}, machine ${fmt(result.machineCpuUs, 0)})${result.non2xx || result.errors ? `  non-2xx ${result.non2xx}, errors ${result.errors}` : ""}`,
        );
      }
    }
    if (o.profilePath) await gw.profileStop(o.profilePath);

    const results = systems.map((s): SystemResult => {
      const rs = runs.get(s.key)!;
      const statuses: Record<string, number> = {};
      for (const r of rs)
        for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
      return {
        key: s.key,
        label: s.label,
        runs: rs,
        rps: median(rs.map((r) => r.rps)),
        p50: median(rs.map((r) => r.p50)),
        p99: median(rs.map((r) => r.p99)),
        rpsMin: Math.min(...rs.map((r) => r.rps)),
        rpsMax: Math.max(...rs.map((r) => r.rps)),
        cpuUs: median(rs.map((r) => r.cpuUs)),
        upstreamCpuUs: median(rs.map((r) => r.upstreamCpuUs)),
        driverCpuUs: median(rs.map((r) => r.driverCpuUs)),
        postgresCpuUs: median(rs.map((r) => r.postgresCpuUs)),
        redisCpuUs: median(rs.map((r) => r.redisCpuUs)),
        machineCpuUs: median(rs.map((r) => r.machineCpuUs)),
        non2xx: rs.reduce((n, r) => n + r.non2xx, 0),
        errors: rs.reduce((n, r) => n + r.errors, 0),
        statuses,
      };
    });

    const gatewayStats: Record<string, unknown> = {};
    gatewayStats.auditOn = await gw.stop();
    gatewayStats.auditOnF = await gwOn.stop();
    gatewayStats.auditOff = await gwOff.stop();
    gatewayStats.inProcess = await gwLocal.stop();
    if (db.kind === "postgres") {
      // Each transaction has its own xmin: how many events the group commit put in each insert.
      const [row] = (await db.handle.db.execute(
        sql`select count(*)::int as events, count(distinct xmin::text)::int as transactions from audit_events`,
      )) as unknown as { events: number; transactions: number }[];
      if (row && row.transactions > 0) {
        gatewayStats.auditBatches = row;
        o.log(`  audit trail: ${row.events} events in ${row.transactions} transactions`);
        notes.push(
          `Audit trail after the run: ${fmt(row.events, 0)} events in ${fmt(row.transactions, 0)} transactions (${fmt(row.events / row.transactions, 1)} events per group commit, all gateways and the token service together).`,
        );
      }
    }
    return { systems: results, database: db.describe, notes, gatewayStats };
  } finally {
    await Promise.all(children.map((c) => c.stop().catch(() => undefined)));
    await db.drop();
    if (o.redisUrl) await dropRedisPrefix(o.redisUrl, redisPrefix).catch(() => undefined);
    for (const dir of copies) await rm(dir, { recursive: true, force: true });
  }
}

function decodeJwtHeaderKid(token: string): string | undefined {
  const header = JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString("utf8")) as {
    kid?: string;
  };
  return header.kid;
}

/** Whether a server URL names this machine (a loopback address or `localhost`). */
function onThisHost(url: string): boolean {
  try {
    const host = new URL(url).hostname;
    return host === "localhost" || host === "[::1]" || host.startsWith("127.");
  } catch {
    return false; // e.g. a cluster's list of nodes: not measured
  }
}

async function sanityCheck(s: System): Promise<void> {
  const res = await fetch(s.url, { headers: s.headers });
  const text = await res.text();
  if (res.status !== 200)
    throw new Error(`${s.label}: sanity request answered ${res.status}: ${text.slice(0, 200)}`);
  const body = JSON.parse(text) as { call?: { member?: Record<string, unknown> } };
  const member = body.call?.member;
  if (!member || typeof member.id !== "string")
    throw new Error(`${s.label}: sanity answer has no call.member`);
  if (s.expectMinimised && ("email" in member || "address" in member)) {
    throw new Error(`${s.label}: the gateway's answer was not minimised`);
  }
}

export const fmt = (n: number, digits: number): string =>
  Number.isFinite(n)
    ? n.toLocaleString("en-GB", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "n/a";
