/**
 * `pnpm bench --soak [--soak-minutes=10] [--soak-rate=500]` (not in CI): the production shape
 * (token service, phone bank and gateway in their own processes, Postgres, Redis, durable audit)
 * at a fixed request rate for minutes, with issuance and revocation churn through the token
 * service all along. Every 10 s the gateway's RSS and event-loop delay are sampled. It checks
 * that memory and loop delay stay flat after warm-up, that no answer but the expected refusals
 * is non-2xx, and that every decision the gateway answered is in the audit trail.
 */
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { sql } from "drizzle-orm";
import { createScratchDb, dropRedisPrefix } from "./db.ts";
import type { ProcessStats } from "./ipc.ts";
import { Child } from "./proc.ts";
import type { GatewayConfig } from "./servers/gateway.ts";
import type { TokenServiceConfig } from "./servers/token-service.ts";
import type { UpstreamConfig } from "./servers/upstream.ts";
import { ISSUER, newAdminToken, remoteTokenService } from "./token-service.ts";

const script = (name: string) => fileURLToPath(new URL(`./servers/${name}.ts`, import.meta.url));

export interface SoakSample extends ProcessStats {
  /** seconds since the start */
  at: number;
  rps: number;
  p99: number;
  non2xx: number;
}

export interface SoakResult {
  minutes: number;
  rate: number;
  samples: SoakSample[];
  /** answers to the load and to the churn's probes */
  decisions: number;
  auditAccessEvents: number;
  unexpectedNon2xx: number;
  expectedRefusals: number;
  errors: number;
  issued: number;
  revoked: number;
  /** RSS and loop p99 at the end of warm-up (the first fifth) and over the last fifth */
  rssWarm: number;
  rssEnd: number;
  loopP99Warm: number;
  loopP99End: number;
  verdicts: { name: string; met: boolean; value: string }[];
}

const SEGMENT_S = 10;
const CONNECTIONS = 16;

export async function runSoak(o: {
  minutes: number;
  rate: number;
  adminUrl: string;
  redisUrl: string;
  log: (line: string) => void;
}): Promise<SoakResult> {
  const db = await createScratchDb("soak", o.adminUrl);
  const redisPrefix = `pl:bench:soak:${randomBytes(6).toString("hex")}:`;
  const children: Child[] = [];
  try {
    const adminToken = newAdminToken();
    const secret = randomBytes(32).toString("base64url");
    const [tsChild, upstream, driver] = await Promise.all([
      Child.start<TokenServiceConfig>(
        { name: "token service", script: script("token-service"), bundle: true },
        { databaseUrl: db.url!, adminToken, redisUrl: o.redisUrl, redisPrefix },
      ),
      Child.start<UpstreamConfig>({ name: "upstream", script: script("upstream") }, { secret }),
      Child.start<Record<string, never>>({ name: "load driver", script: script("load-driver") }, {}),
    ]);
    children.push(tsChild, upstream, driver);
    const ts = remoteTokenService(`http://127.0.0.1:${tsChild.port}`, adminToken);
    await ts.seed();
    const gw = await Child.start<GatewayConfig>(
      { name: "gateway", script: script("gateway"), bundle: true },
      {
        databaseUrl: db.url!,
        upstreamUrl: `http://127.0.0.1:${upstream.port}`,
        issuer: ISSUER,
        phonebankSecret: secret,
        ipHashKey: randomBytes(32).toString("base64url"),
        audit: true,
        redisUrl: o.redisUrl,
        redisPrefix,
      },
    );
    children.push(gw);
    const gwUrl = `http://127.0.0.1:${gw.port}`;
    const openSession = async (token: string): Promise<string> => {
      const res = await fetch(`${gwUrl}/l/${token}`, {
        method: "POST",
        headers: { accept: "application/json" },
      });
      if (res.status !== 201) throw new Error(`soak: redemption answered ${res.status}`);
      return ((await res.json()) as { session: string }).session;
    };
    const session = await openSession((await ts.issueLink("soak-volunteer")).token);

    let probes = 0;
    let expectedRefusals = 0;
    let unexpected = 0;
    let issued = 0;
    let revoked = 0;
    const probe = async (s: string): Promise<{ status: number; code?: string }> => {
      probes++;
      const res = await fetch(`${gwUrl}/pb/calls/next`, { headers: { authorization: `Bearer ${s}` } });
      const text = await res.text();
      const code =
        res.status >= 400 ? (JSON.parse(text) as { error?: { code?: string } }).error?.code : undefined;
      return { status: res.status, code };
    };
    /** One churn step: a batch issued, a link issued, used, revoked and refused. */
    const churn = async () => {
      await ts.issueBatch(`soak-${issued}`, 50);
      const link = await ts.issueLink(`soak-churn-${issued}`);
      issued += 51;
      const s = await openSession(link.token);
      const before = await probe(s);
      if (before.status !== 200) unexpected++;
      await ts.call("POST", "/v1/revocations", { scope: "link", linkId: link.id, reason: "soak churn" });
      revoked++;
      const deadline = Date.now() + 5_000;
      for (;;) {
        const after = await probe(s);
        if (after.code === "revoked") {
          expectedRefusals++;
          break;
        }
        if (after.status !== 200) unexpected++;
        if (Date.now() > deadline)
          throw new Error(
            `soak: a revoked link was still answered ${after.status} ${after.code ?? ""} after 5 s`,
          );
      }
    };

    const samples: SoakSample[] = [];
    let decisions = 0;
    let errors = 0;
    const segments = Math.max(1, Math.round((o.minutes * 60) / SEGMENT_S));
    await gw.stats(); // resets the loop histogram
    const t0 = performance.now();
    for (let i = 0; i < segments; i++) {
      let stop = false;
      // Caught here and rethrown after the segment: a failed churn must not crash the runner.
      const churning = (async () => {
        while (!stop) {
          await churn();
          await new Promise((r) => setTimeout(r, 1000));
        }
      })().then(
        () => undefined,
        (err: unknown) => err,
      );
      const r = await driver.load({
        url: `${gwUrl}/pb/calls/next`,
        headers: { authorization: `Bearer ${session}` },
        connections: CONNECTIONS,
        duration: SEGMENT_S,
        overallRate: o.rate,
      });
      stop = true;
      const failed = await churning;
      if (failed) throw failed;
      decisions += r.ok + r.non2xx;
      errors += r.errors + r.timeouts;
      unexpected += r.non2xx;
      const s = await gw.stats();
      const sample = { at: (performance.now() - t0) / 1000, rps: r.rps, p99: r.p99, non2xx: r.non2xx, ...s };
      samples.push(sample);
      o.log(
        `  ${sample.at.toFixed(0).padStart(4)} s  ${r.rps.toFixed(0).padStart(5)} req/s  p99 ${r.p99} ms  RSS ${(s.rss / 2 ** 20).toFixed(0)} MB  heap ${(s.heapUsed / 2 ** 20).toFixed(0)} MB  loop p99 ${s.loopP99.toFixed(1)} ms (max ${s.loopMax.toFixed(0)})  non-2xx ${r.non2xx}`,
      );
    }
    decisions += probes;
    // A request still in flight when a segment ends is decided (and audited) but not answered to
    // autocannon: at most one per connection (no pipelining) per segment.
    const inFlightAtEnds = CONNECTIONS * segments;
    await gw.stop(); // writes every queued audit event
    const [row] = (await db.handle.db.execute(
      sql`select count(*)::int as n from audit_events where type = 'access'`,
    )) as unknown as { n: number }[];
    const auditAccessEvents = row?.n ?? 0;

    const fifth = Math.max(1, Math.floor(samples.length / 5));
    const avg = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const warm = samples.slice(fifth - 1, Math.min(samples.length, fifth * 2));
    const end = samples.slice(-fifth);
    const rssWarm = avg(warm.map((s) => s.rss));
    const rssEnd = avg(end.map((s) => s.rss));
    const loopP99Warm = avg(warm.map((s) => s.loopP99));
    const loopP99End = avg(end.map((s) => s.loopP99));
    const mb = (n: number) => `${(n / 2 ** 20).toFixed(0)} MB`;
    const verdicts = [
      {
        name: "RSS flat after warm-up (last fifth ≤ 1.15 × after warm-up)",
        met: rssEnd <= rssWarm * 1.15,
        value: `${mb(rssWarm)} → ${mb(rssEnd)}`,
      },
      {
        name: "event-loop delay flat (last fifth's p99 ≤ 2 × after warm-up, or ≤ 20 ms)",
        met: loopP99End <= Math.max(loopP99Warm * 2, 20),
        value: `${loopP99Warm.toFixed(1)} → ${loopP99End.toFixed(1)} ms`,
      },
      {
        name: "no non-2xx but the expected refusals",
        met: unexpected === 0 && errors === 0,
        value: `${unexpected} unexpected, ${errors} errors/timeouts, ${expectedRefusals} expected (revoked)`,
      },
      {
        name: "audit events in = decisions out (answers, plus requests cut off at a segment's end)",
        met: auditAccessEvents >= decisions && auditAccessEvents <= decisions + inFlightAtEnds,
        value: `${auditAccessEvents} access events; ${decisions} answers + at most ${inFlightAtEnds} in flight at segment ends`,
      },
    ];
    return {
      minutes: o.minutes,
      rate: o.rate,
      samples,
      decisions,
      auditAccessEvents,
      unexpectedNon2xx: unexpected,
      expectedRefusals,
      errors,
      issued,
      revoked,
      rssWarm,
      rssEnd,
      loopP99Warm,
      loopP99End,
      verdicts,
    };
  } finally {
    await Promise.all(children.map((c) => c.stop().catch(() => undefined)));
    await db.drop();
    await dropRedisPrefix(o.redisUrl, redisPrefix).catch(() => undefined);
  }
}
