/**
 * Growth: the production shape at 1,000,000 links and 100,000 revocations (all six scopes) against
 * an empty deployment, side by side. Each deployment has its own database, token service process
 * and gateway process (Redis for limits, quota and feed; durable audit). The links and
 * revocations are written straight into Postgres with `generate_series` (minutes through the
 * API; the rows are what the API writes); then the big deployment's gateway starts, so its
 * start-up loads the whole state. The load alternates between the two gateways round by round.
 */
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { appendEvents, verifyStored } from "@phaselock/audit";
import { sql } from "drizzle-orm";
import { createScratchDb, dropRedisPrefix, type ScratchDb } from "./db.ts";
import type { ProcessStats } from "./ipc.ts";
import { Child } from "./proc.ts";
import type { GatewayConfig } from "./servers/gateway.ts";
import type { TokenServiceConfig } from "./servers/token-service.ts";
import type { UpstreamConfig } from "./servers/upstream.ts";
import { median } from "./stats.ts";
import { CAMPAIGN, CONTEST, ISSUER, newAdminToken, PHASE, remoteTokenService } from "./token-service.ts";

const script = (name: string) => fileURLToPath(new URL(`./servers/${name}.ts`, import.meta.url));

export interface GrowthSide {
  links: number;
  revocations: number;
  /** ms from forking the gateway until it serves (includes loading tsx and the code) */
  startMs: number;
  /** RSS after start-up and after the load, bytes */
  rssStart: number;
  rssEnd: number;
  cpuUs: number;
  rps: number;
  p99: number;
}

export interface GrowthResult {
  empty: GrowthSide;
  large: GrowthSide;
  /** how long writing the rows took (generate_series) */
  setupSeconds: number;
  /** POST /v1/links/batch of 10,000 on the large deployment */
  issuanceLinksPerSecond: number;
  /** GET /v1/links first page, and filtered by campaign, medians of 5, ms */
  listMs: number;
  listCampaignMs: number;
  /** GET /v1/campaigns/{id} (the campaign's links counted by status), median of 5, ms */
  campaignMs: number;
  auditEvents: number;
  /** verifyStored over the whole trail, ms */
  auditVerifyMs: number;
  revocationScopes: Record<string, number>;
}

const LINKS = 1_000_000;
const REVOCATION_MIX = {
  link: 94_000,
  volunteer: 3_000,
  campaign: 1_000,
  phase: 1_000,
  contest: 999,
  all: 1,
};

export async function runGrowth(o: {
  adminUrl: string;
  redisUrl: string;
  rounds: number;
  duration: number;
  links?: number;
  auditEvents?: number;
  log: (line: string) => void;
}): Promise<GrowthResult> {
  const children: Child[] = [];
  const dbs: ScratchDb[] = [];
  const prefixes: string[] = [];
  const secret = randomBytes(32).toString("base64url");
  const links = o.links ?? LINKS;
  try {
    const [upstream, driver] = await Promise.all([
      Child.start<UpstreamConfig>({ name: "upstream", script: script("upstream") }, { secret }),
      Child.start<Record<string, never>>({ name: "load driver", script: script("load-driver") }, {}),
    ]);
    children.push(upstream, driver);

    const deployment = async (label: string) => {
      const db = await createScratchDb(`growth_${label}`, o.adminUrl);
      dbs.push(db);
      const redisPrefix = `pl:bench:growth:${randomBytes(6).toString("hex")}:`;
      prefixes.push(redisPrefix);
      const adminToken = newAdminToken();
      const tsChild = await Child.start<TokenServiceConfig>(
        { name: `token service (${label})`, script: script("token-service"), bundle: true },
        { databaseUrl: db.url!, adminToken, redisUrl: o.redisUrl, redisPrefix },
      );
      children.push(tsChild);
      const tsUrl = `http://127.0.0.1:${tsChild.port}`;
      const ts = remoteTokenService(tsUrl, adminToken);
      await ts.seed();
      const link = await ts.issueLink(`growth-${label}`);
      return { db, ts, tsUrl, adminToken, link, redisPrefix };
    };
    const [empty, large] = [await deployment("empty"), await deployment("large")];

    o.log(`  writing ${links.toLocaleString("en-GB")} links and 100,000 revocations`);
    const t0 = performance.now();
    const db = large.db.handle.db;
    const [{ kid } = { kid: "" }] = (await db.execute(
      sql`select kid from links where id = ${large.link.id}`,
    )) as unknown as { kid: string }[];
    await db.execute(sql`
      insert into links (id, campaign_id, contest_id, phase, volunteer_ref, volunteer_name, scopes,
        not_before, expires_at, max_uses, uses, issued_by, issued_at, kid)
      select 'lnk_g' || lpad(g::text, 9, '0'), ${CAMPAIGN}, ${CONTEST}, ${PHASE}, 'vol-g' || g,
        'Volunteer ' || g, array['calls:read', 'calls:write', 'members:read'],
        now() - interval '1 hour', now() + interval '30 days', 100, 0, 'admin',
        now() - interval '1 hour' - (g || ' ms')::interval, ${kid}
      from generate_series(1, ${links - 1}) as g`);
    // Watermark scopes aimed at other campaigns, contests, phases and volunteers (and one `all`
    // from long ago): the load's own link stays valid while the index holds every kind.
    const past = "2000-01-01T00:00:00Z";
    const mix = REVOCATION_MIX;
    await db.execute(sql`
      insert into revocations (id, scope, link_id, campaign_id, contest_id, reason, actor, effective_at)
      select 'rev_gl' || g, 'link', 'lnk_g' || lpad(g::text, 9, '0'), ${CAMPAIGN}, ${CONTEST}, 'growth', 'admin', now()
      from generate_series(1, ${mix.link}) as g`);
    await db.execute(sql`
      insert into revocations (id, scope, volunteer_ref, campaign_id, reason, actor, effective_at)
      select 'rev_gv' || g, 'volunteer', 'vol-g' || (${mix.link} + g), ${CAMPAIGN}, 'growth', 'admin', now()
      from generate_series(1, ${mix.volunteer}) as g`);
    await db.execute(sql`
      insert into revocations (id, scope, campaign_id, reason, actor, effective_at)
      select 'rev_gc' || g, 'campaign', 'other-campaign-' || g, 'growth', 'admin', now()
      from generate_series(1, ${mix.campaign}) as g`);
    await db.execute(sql`
      insert into revocations (id, scope, contest_id, phase, reason, actor, effective_at)
      select 'rev_gp' || g, 'phase', ${CONTEST}, 'other-phase-' || g, 'growth', 'admin', now()
      from generate_series(1, ${mix.phase}) as g`);
    await db.execute(sql`
      insert into revocations (id, scope, contest_id, reason, actor, effective_at)
      select 'rev_gk' || g, 'contest', 'other-contest-' || g, 'growth', 'admin', now()
      from generate_series(1, ${mix.contest}) as g`);
    await db.execute(sql`
      insert into revocations (id, scope, reason, actor, effective_at)
      values ('rev_ga1', 'all', 'growth', 'admin', ${past})`);
    await db.execute(sql`analyze links`);
    await db.execute(sql`analyze revocations`);
    const setupSeconds = (performance.now() - t0) / 1000;
    o.log(`  rows written in ${setupSeconds.toFixed(1)} s`);

    const startGateway = async (d: typeof empty, label: string) => {
      const t = performance.now();
      const gw = await Child.start<GatewayConfig>(
        { name: `gateway (${label})`, script: script("gateway"), bundle: true, startTimeoutMs: 300_000 },
        {
          databaseUrl: d.db.url!,
          upstreamUrl: `http://127.0.0.1:${upstream.port}`,
          issuer: ISSUER,
          phonebankSecret: secret,
          ipHashKey: randomBytes(32).toString("base64url"),
          audit: true,
          redisUrl: o.redisUrl,
          redisPrefix: d.redisPrefix,
        },
      );
      const startMs = performance.now() - t;
      children.push(gw);
      const rssStart = (await gw.stats()).rss;
      const res = await fetch(`http://127.0.0.1:${gw.port}/l/${d.link.token}`, {
        method: "POST",
        headers: { accept: "application/json" },
      });
      if (res.status !== 201) throw new Error(`growth: redemption on ${label} answered ${res.status}`);
      const { session } = (await res.json()) as { session: string };
      return { gw, startMs, rssStart, session };
    };
    const gEmpty = await startGateway(empty, "empty");
    const gLarge = await startGateway(large, "large");
    o.log(`  gateway start-up: empty ${gEmpty.startMs.toFixed(0)} ms, large ${gLarge.startMs.toFixed(0)} ms`);

    const runs = new Map<string, { cpuUs: number; rps: number; p99: number }[]>([
      ["empty", []],
      ["large", []],
    ]);
    const sides = [
      ["empty", gEmpty],
      ["large", gLarge],
    ] as const;
    const load = async (g: typeof gEmpty, duration: number) => {
      const c0 = await g.gw.cpuMicros();
      const r = await driver.load({
        url: `http://127.0.0.1:${g.gw.port}/pb/calls/next`,
        headers: { authorization: `Bearer ${g.session}` },
        connections: 32,
        duration,
      });
      const c1 = await g.gw.cpuMicros();
      if (r.non2xx || r.errors) throw new Error(`growth: ${r.non2xx} non-2xx, ${r.errors} errors`);
      return { cpuUs: (c1 - c0) / r.ok, rps: r.rps, p99: r.p99 };
    };
    for (const [, g] of sides) await load(g, 2); // warm-up
    for (let r = 0; r < o.rounds; r++) {
      for (const [name, g] of r % 2 === 0 ? sides : [...sides].reverse()) {
        const x = await load(g, o.duration);
        runs.get(name)!.push(x);
        o.log(
          `  round ${r + 1}/${o.rounds} ${name.padEnd(6)} ${x.rps.toFixed(0)} req/s  CPU ${x.cpuUs.toFixed(0)} µs/req  p99 ${x.p99} ms`,
        );
      }
    }
    const side = async (name: string, g: typeof gEmpty, n: number, revs: number): Promise<GrowthSide> => {
      const rs = runs.get(name)!;
      const s: ProcessStats = await g.gw.stats();
      return {
        links: n,
        revocations: revs,
        startMs: g.startMs,
        rssStart: g.rssStart,
        rssEnd: s.rss,
        cpuUs: median(rs.map((x) => x.cpuUs)),
        rps: median(rs.map((x) => x.rps)),
        p99: median(rs.map((x) => x.p99)),
      };
    };
    const emptySide = await side("empty", gEmpty, 1, 0);
    const largeSide = await side("large", gLarge, links, 100_000);

    // Issuance and listing at that size, through the large deployment's token service over HTTP.
    const t1 = performance.now();
    await large.ts.issueBatch("growth-batch", 10_000);
    const issuanceLinksPerSecond = 10_000 / ((performance.now() - t1) / 1000);
    const timed = async (path: string) => {
      const ms: number[] = [];
      for (let i = 0; i < 5; i++) {
        const t = performance.now();
        await large.ts.call("GET", path);
        ms.push(performance.now() - t);
      }
      return median(ms);
    };
    const listMs = await timed("/v1/links");
    const listCampaignMs = await timed(`/v1/links?campaignId=${CAMPAIGN}&status=active`);
    const campaignMs = await timed(`/v1/campaigns/${CAMPAIGN}`);

    // The audit trail at size: 100,000 more events through the chain writer, then a full verify.
    const extra = o.auditEvents ?? 100_000;
    for (let i = 0; i < extra; i += 1_000) {
      await appendEvents(
        db,
        Array.from({ length: Math.min(1_000, extra - i) }, (_, j) => ({
          type: "access",
          at: new Date(),
          actor: `vol-g${i + j}`,
          campaignId: CAMPAIGN,
          linkId: `lnk_g${String(i + j + 1).padStart(9, "0")}`,
          decision: "allow" as const,
          reason: null,
          data: { route: "GET /calls/next", status: 200 },
        })),
      );
    }
    const t2 = performance.now();
    const verified = await verifyStored(db);
    const auditVerifyMs = performance.now() - t2;
    const [{ n: auditEvents } = { n: 0 }] = (await db.execute(
      sql`select count(*)::int as n from audit_events`,
    )) as unknown as { n: number }[];
    if (!verified.ok) throw new Error("growth: the audit trail did not verify");
    return {
      empty: emptySide,
      large: largeSide,
      setupSeconds,
      issuanceLinksPerSecond,
      listMs,
      listCampaignMs,
      campaignMs,
      auditEvents,
      auditVerifyMs,
      revocationScopes: { ...mix },
    };
  } finally {
    await Promise.all(children.map((c) => c.stop().catch(() => undefined)));
    for (const d of dbs) await d.drop();
    for (const p of prefixes) await dropRedisPrefix(o.redisUrl, p).catch(() => undefined);
  }
}
