import type { GrowthResult } from "./growth.ts";
import type {
  AuditBenchResult,
  ChecksBenchResult,
  IssuanceBenchResult,
  RevocationBenchResult,
  VerifyBenchResult,
} from "./micro.ts";
import { fmt, type ProxyBenchResult, type SystemKey, type SystemResult } from "./proxy.ts";
import type { SoakResult } from "./soak.ts";

export interface Machine {
  cpus: string;
  cores: number;
  memory: string;
  node: string;
  os: string;
  date: string;
}

/** A part that did not run: why (skipped) or how it failed (error). */
export interface NotRun {
  skipped?: string;
  error?: string;
}

export interface BenchReport {
  mode: "quick" | "full";
  machine: Machine;
  method: {
    rounds: number;
    duration: number;
    warmup: number;
    connections: number;
    postgres: string;
    redis: string;
  };
  elapsedSeconds: number;
  proxy: ProxyBenchResult | NotRun;
  checks: ChecksBenchResult | NotRun;
  verify: VerifyBenchResult | NotRun;
  issuance: IssuanceBenchResult | NotRun;
  revocation: RevocationBenchResult | NotRun;
  audit: AuditBenchResult | NotRun;
  /** markdown sections of benchmarks kept in their own files (e.g. audit-scale.ts), in order */
  extraSections?: string[] | undefined;
  profile?: string | undefined;
  /** hand-written analysis kept in bench/analysis.md, appended verbatim */
  analysis?: string | undefined;
}

export interface Goal {
  name: string;
  target: string;
  value: string;
  met: boolean | null;
}

const ran = <T extends object>(x: T | NotRun): x is T => !("skipped" in x) && !("error" in x);
const whyNot = (x: NotRun): string => (x.skipped ? `skipped: ${x.skipped}` : `failed: ${x.error}`);

function system(r: BenchReport, key: SystemKey): SystemResult | undefined {
  return ran(r.proxy) ? r.proxy.systems.find((s) => s.key === key) : undefined;
}

function ratio(r: BenchReport, a: SystemKey, b: SystemKey): number {
  const x = system(r, a);
  const y = system(r, b);
  return x && y && y.rps > 0 ? x.rps / y.rps : Number.NaN;
}

function cpuRatio(r: BenchReport, a: SystemKey, b: SystemKey): number {
  const x = system(r, a);
  const y = system(r, b);
  return x && y && y.cpuUs > 0 ? x.cpuUs / y.cpuUs : Number.NaN;
}

export function ratios(r: BenchReport): { name: string; value: number; what: string }[] {
  return [
    { name: "c/b", value: ratio(r, "c", "b"), what: "gateway (Bearer) vs the bare proxy floor" },
    { name: "d/b", value: ratio(r, "d", "b"), what: "gateway (cookie) vs the bare proxy floor" },
    {
      name: "c/e",
      value: ratio(r, "c", "e"),
      what: "gateway (Bearer) vs express + express-jwt + http-proxy-middleware",
    },
    {
      name: "b/a",
      value: ratio(r, "b", "a"),
      what: "bare proxy vs the upstream alone (what any extra hop costs here)",
    },
    {
      name: "b/e",
      value: ratio(r, "b", "e"),
      what: "bare proxy vs express stack: the most any gateway could reach for c/e on this machine",
    },
    { name: "f/g", value: ratio(r, "f", "g"), what: "gateway with audit on vs off" },
    {
      name: "c/h",
      value: ratio(r, "c", "h"),
      what: "gateway (Bearer) vs fastify + @fastify/jwt + reply-from",
    },
    { name: "h/b", value: ratio(r, "h", "b"), what: "fastify stack vs the bare proxy floor" },
    { name: "i/c", value: ratio(r, "i", "c"), what: "gateway with in-process stores vs Redis (production)" },
    {
      name: "k/g",
      value: ratio(r, "k", "g"),
      what: "audit off: leased meter (not the default) vs the exact Redis meter",
    },
    { name: "p99 c/b", value: p99Ratio(r, "c", "b"), what: "p99 latency: gateway (Bearer) vs bare proxy" },
    {
      name: "CPU c/h",
      value: cpuRatio(r, "c", "h"),
      what: "proxy-process CPU per request: gateway (Bearer) vs fastify stack",
    },
    {
      name: "CPU c/b",
      value: cpuRatio(r, "c", "b"),
      what: "proxy-process CPU per request: gateway (Bearer) vs bare proxy",
    },
    {
      name: "CPU c/e",
      value: cpuRatio(r, "c", "e"),
      what: "proxy-process CPU per request: gateway (Bearer) vs express stack",
    },
    {
      name: "CPU f/g",
      value: cpuRatio(r, "f", "g"),
      what: "proxy-process CPU per request: gateway audit on vs off",
    },
    {
      name: "CPU k/g",
      value: cpuRatio(r, "k", "g"),
      what: "proxy-process CPU per request: leased meter vs exact Redis meter (audit off)",
    },
  ];
}

/** A hit must be cheap for every caller: alone, among many, and for one busy volunteer. */
const worstHit = (v: VerifyBenchResult) => Math.max(v.hitAloneUs, v.hitRoundRobinUs, v.hitHotUs);

/** A goal `value ≥ target` (or `≤` when `atMost`): met or missed, and by how much, in per cent of the target. */
function goal(
  name: string,
  target: number,
  value: number,
  show: (n: number) => string,
  atMost: boolean,
  why: string,
): Goal {
  if (!Number.isFinite(value))
    return { name, target: `${atMost ? "≤" : "≥"} ${show(target)}`, value: why, met: null };
  const met = atMost ? value <= target : value >= target;
  const off = ((value - target) / target) * 100;
  return {
    name,
    target: `${atMost ? "≤" : "≥"} ${show(target)}`,
    value: `${show(value)} (${off >= 0 ? "+" : "−"}${fmt(Math.abs(off), 0)} % of target)`,
    met,
  };
}

function p99Ratio(r: BenchReport, a: SystemKey, b: SystemKey): number {
  const x = system(r, a);
  const y = system(r, b);
  return x && y && y.p99 > 0 ? x.p99 / y.p99 : Number.NaN;
}

export function goals(r: BenchReport): Goal[] {
  const na = (x: object): string => (ran(x as NotRun) ? "n/a" : whyNot(x as NotRun));
  const x2 = (n: number) => fmt(n, 2);
  const pct = (n: number) => `${fmt(n * 100, 1)} %`;
  const p = na(r.proxy);
  const auditCpu = cpuRatio(r, "f", "g") - 1;
  // The gateway's goals are judged on (f): the same production wiring as (c), in a process of its
  // own that `--profile` never profiles (the profiler's overhead lands on c and d).
  return [
    goal("gateway vs fastify peer, req/s (f/h)", 1.0, ratio(r, "f", "h"), x2, false, p),
    goal("gateway vs bare proxy, req/s (f/b)", 0.85, ratio(r, "f", "b"), x2, false, p),
    goal("gateway vs bare proxy, CPU µs/req (f/b)", 1.5, cpuRatio(r, "f", "b"), x2, true, p),
    goal("gateway vs bare proxy, p99 (f/b)", 2, p99Ratio(r, "f", "b"), x2, true, p),
    goal("audit on costs, gateway CPU (f/g − 1)", 0.1, auditCpu, pct, true, p),
    goal(
      "revocation reaching 4 gateways, p99",
      20,
      ran(r.revocation) ? r.revocation.p99 : Number.NaN,
      (n) => `${fmt(n, 2)} ms`,
      true,
      na(r.revocation),
    ),
    goal(
      "issuance, one 10,000-link batch",
      20_000,
      ran(r.issuance) ? r.issuance.linksPerSecond : Number.NaN,
      (n) => `${fmt(n, 0)} links/s`,
      false,
      na(r.issuance),
    ),
    goal(
      "cache-hit verify (worst realistic pattern)",
      10,
      ran(r.verify) ? worstHit(r.verify) : Number.NaN,
      (n) => `${fmt(n, 2)} µs`,
      true,
      na(r.verify),
    ),
    goal(
      "audit append (benchAppend)",
      20_000,
      ran(r.audit) ? r.audit.eventsPerSecond : Number.NaN,
      (n) => `${fmt(n, 0)} events/s`,
      false,
      na(r.audit),
    ),
  ];
}

const verdict = (m: boolean | null) => (m === null ? "n/a" : m ? "met" : "MISSED");

function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join("  ");
  return [line(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

function mdTable(head: string[], rows: string[][], align?: ("l" | "r")[]): string {
  const sep = head.map((_, i) => (align?.[i] === "r" ? "---:" : "---"));
  return [head, sep, ...rows].map((r) => `| ${r.join(" | ")} |`).join("\n");
}

/**
 * CPU per 2xx answer, by process: the proxy's and the upstream's own counters, the load driver's,
 * every local Postgres and Redis process (/proc), and the whole machine's busy time: on two
 * shared cores req/s follows the last.
 */
const CPU_COLUMNS = [
  "proxy CPU µs/req",
  "upstream CPU µs/req",
  "driver CPU µs/req",
  "Postgres CPU µs/req",
  "Redis CPU µs/req",
  "machine CPU µs/req",
];

const cpuCells = (x: {
  upstreamCpuUs: number;
  driverCpuUs: number;
  postgresCpuUs: number;
  redisCpuUs: number;
  machineCpuUs: number;
}): string[] => [
  fmt(x.upstreamCpuUs, 0),
  fmt(x.driverCpuUs, 0),
  fmt(x.postgresCpuUs, 0),
  fmt(x.redisCpuUs, 0),
  fmt(x.machineCpuUs, 0),
];

function proxyRows(r: BenchReport): string[][] {
  if (!ran(r.proxy)) return [];
  return r.proxy.systems.map((s) => [
    s.label,
    fmt(s.rps, 0),
    s.runs.length > 1 ? `${fmt(s.rpsMin, 0)}–${fmt(s.rpsMax, 0)}` : "",
    fmt(s.p50, 0),
    fmt(s.p99, 0),
    s.key === "a" ? "" : fmt(s.cpuUs, 0),
    ...cpuCells(s),
    s.non2xx || s.errors
      ? `${s.non2xx} non-2xx (${Object.entries(s.statuses)
          .map(([k, v]) => `${k}×${v}`)
          .join(", ")}), ${s.errors} errors`
      : "0",
  ]);
}

function microRows(r: BenchReport): string[][] {
  const rows: string[][] = [];
  if (ran(r.checks)) {
    const k = r.checks;
    rows.push([
      "gateway checks per request, no HTTP (session + decide / rate limit / minimise / record quota / audit event)",
      `${fmt(k.total, 1)} µs (${[k.check, k.rateLimit, k.minimise, k.recordQuota, k.audit].map((x) => fmt(x, 1)).join(" / ")})`,
    ]);
  } else rows.push(["gateway checks", whyNot(r.checks)]);
  if (ran(r.verify)) {
    const v = r.verify;
    const n = fmt(v.cacheEntries, 0);
    rows.push(["verify, cache miss (SHA-256 + jose EdDSA + cache insert)", `${fmt(v.missUs, 1)} µs/op`]);
    rows.push(["verify, cache hit, the only entry in its cache", `${fmt(v.hitAloneUs, 2)} µs/op`]);
    rows.push([
      `verify, cache hit, ${n} entries, tokens in turn (many volunteers)`,
      `${fmt(v.hitRoundRobinUs, 2)} µs/op`,
    ]);
    rows.push([
      `verify, cache hit, ${n} entries, one token again and again (a busy volunteer)`,
      `${fmt(v.hitHotUs, 2)} µs/op`,
    ]);
  } else rows.push(["token verify", whyNot(r.verify)]);
  if (ran(r.issuance)) {
    rows.push([
      `issuance, ${fmt(r.issuance.batchSize, 0)} links per POST /v1/links/batch (${r.issuance.database.split(" ")[0]})`,
      `${fmt(r.issuance.linksPerSecond, 0)} links/s`,
    ]);
    rows.push([
      "issuance, until the batch's audit events are written",
      `${fmt(r.issuance.linksPerSecondAudited, 0)} links/s`,
    ]);
  } else rows.push(["issuance", whyNot(r.issuance)]);
  if (ran(r.revocation)) {
    rows.push([
      `revocation → all 4 gateways deny, p50 / p99 / max (${r.revocation.revocations} revocations)`,
      `${fmt(r.revocation.p50, 2)} / ${fmt(r.revocation.p99, 2)} / ${fmt(r.revocation.max, 2)} ms`,
    ]);
    rows.push([
      "revocations already denied by all 4 when the call returned",
      `${r.revocation.atReturn} of ${r.revocation.revocations}`,
    ]);
    rows.push(["revoke call itself (commit + publish), p50", `${fmt(r.revocation.callP50, 2)} ms`]);
  } else rows.push(["revocation propagation", whyNot(r.revocation)]);
  if (ran(r.audit)) {
    rows.push([
      `audit append (${fmt(r.audit.events, 0)} events × ${r.audit.runs}, batches of 1,000, ${r.audit.database.split(" ")[0]})`,
      `${fmt(r.audit.eventsPerSecond, 0)} events/s`,
    ]);
  } else rows.push(["audit append", whyNot(r.audit)]);
  return rows;
}

/** The summary printed at the end of a run. */
export function consoleReport(r: BenchReport): string {
  const out: string[] = [];
  out.push(
    `Phaselock benchmarks (${r.mode}) — ${r.machine.cores} × ${r.machine.cpus}, ${r.machine.memory}, Node ${r.machine.node}`,
  );
  out.push("");
  if (ran(r.proxy)) {
    out.push(
      table(
        ["system (GET /pb/calls/next)", "req/s", "range", "p50 ms", "p99 ms", ...CPU_COLUMNS, "failures"],
        proxyRows(r),
      ),
    );
    out.push("");
    out.push(
      table(
        ["ratio", "value", "what"],
        ratios(r).map((x) => [x.name, fmt(x.value, 2), x.what]),
      ),
    );
  } else out.push(`proxy comparison ${whyNot(r.proxy)}`);
  out.push("");
  out.push(table(["micro-benchmark", "result"], microRows(r)));
  out.push("");
  out.push(
    table(
      ["goal", "target", "value", "verdict"],
      goals(r).map((g) => [g.name, g.target, g.value, verdict(g.met)]),
    ),
  );
  return out.join("\n");
}

/** docs/benchmarks.md */
export function markdownReport(r: BenchReport): string {
  const md: string[] = [];
  const m = r.method;
  md.push("# Benchmarks");
  md.push("");
  md.push(
    `Generated by \`pnpm bench${r.mode === "quick" ? " --quick" : ""}\` on ${r.machine.date} in ${fmt(r.elapsedSeconds, 0)} s. Numbers from one machine on one day: compare ratios, not absolutes, and rerun before quoting them.`,
  );
  md.push("");
  md.push("## Machine");
  md.push("");
  md.push(
    mdTable(
      ["what", "value"],
      [
        ["CPU (os.cpus())", `${r.machine.cores} × ${r.machine.cpus}`],
        ["memory", r.machine.memory],
        ["Node", r.machine.node],
        ["OS", r.machine.os],
        ["date", r.machine.date],
        ["Postgres", m.postgres],
        ["Redis", m.redis],
      ],
    ),
  );
  md.push("");
  md.push("## Method");
  md.push("");
  md.push(
    [
      "**Proxy comparison, in production shape.** The token service, the phone bank, every proxy and the",
      "load generator (autocannon 9, keep-alive, no pipelining) each run in their own Node process, so none",
      `shares an event loop; on a ${r.machine.cores}-core machine they do share the cores, as in any single-host test.`,
      "Compare systems within this run, as ratios: a shared or drifting machine shows in the CPU steal and the",
      "upstream's own CPU per request (the per-round table).",
      "The gateways run on a fresh Postgres database and on Redis under a prefix of this run's own (rate",
      "limits, record quota and the change feed in Redis, as with more than one gateway), with the durable",
      "audit writer; the token service (its own process, same database and Redis) seeds the contest,",
      "campaign and link through its HTTP API. The gateway and the token service run as one esbuild",
      "bundle each (`pnpm build`, as the image runs them); the other systems run on Node's own type stripping.",
      `Each system gets ${m.connections} connections for ${m.duration} s per round, ${m.rounds} round${m.rounds > 1 ? "s" : ""}, after a`,
      `${m.warmup} s warm-up each; the systems are alternated round by round (the order rotates) so that noise`,
      "hurts all alike. Figures are medians over the rounds (the range is the spread of req/s); req/s counts 2xx",
      "answers only, and latencies are autocannon's (1 ms resolution). *CPU µs/req* is the CPU time (user +",
      "system, `process.cpuUsage()` reported by the process itself over IPC) the proxy's process and the",
      "upstream's process spent during the run, divided by the 2xx answers: unlike req/s it does not depend",
      "on how the cores were shared. A busy host still slows every instruction, and a VM may not report it",
      "as *CPU steal* (from /proc/stat, per round): the upstream's own CPU per request, the same work in every",
      "round, is the better gauge of that. The load driver's CPU comes from its own counters too; *Postgres*",
      "and *Redis* CPU is the sum over every process of the local servers (/proc/<pid>/stat: backends, WAL",
      "writer, …; n/a for a server on another host or an embedded PGlite, whose work is the gateway's own),",
      "and *machine CPU* is the whole machine's busy time (/proc/stat, kernel included) per answer. Every",
      "process shares the two cores, so req/s is roughly the cores' time divided by that last figure.",
      "",
      "Every request is `GET /pb/calls/next` (the upstream gets `GET /calls/next`), answered by the demo phone",
      "bank (`services/phonebank`, 50,000 synthetic members).",
      "",
      "- **(a)** the phone bank directly, with the gateway's secret and context headers.",
      "- **(b)** a bare `node:http` reverse proxy with a keep-alive agent: no checks at all, the floor any gateway pays.",
      "- **(c)/(d)** the Phaselock gateway as `services/gateway/src/main.ts` builds it (`createGateway`, policy",
      "  state over Postgres, the Redis change feed, rate limits and record quota in Redis, the version poller,",
      "  the undici upstream pool, the `BatchAuditWriter` writing every decision to `audit_events`, an allowed",
      "  answer leaving only once its event has committed), with a Bearer session (c) or the session cookie",
      "  from a real redemption (d). The bench campaign's limits are raised (1,000,000 requests/min and",
      "  records/h per link) and so is the per-link in-flight cap (8 → 64: all 32 connections carry one",
      "  volunteer's session) so the load is not refused; every other check runs: session, link, signature",
      "  key, revocation, phase, scope, entitlement, rate limits, record quota, response minimisation, audit.",
      "- **(e)** express 5 + express-jwt 8 (public key, algorithm, issuer and audience pinned) +",
      "  http-proxy-middleware with a keep-alive agent, setting the same context headers. express-jwt verifies",
      "  with jsonwebtoken 9, which has no EdDSA, so it gets an **ES256** twin of the link (same claims): the",
      "  closest asymmetric algorithm it accepts. It verifies the signature on every request (no cache) and",
      "  checks nothing else.",
      "- **(f)/(g)** two more production-shape gateway processes, identical but for the audit sink: the",
      "  `BatchAuditWriter` (f) or a sink that discards events (g), each warmed up and measured exactly alike",
      "  (c and d share a third).",
      "- **(h)** what a Node user would build instead: fastify 5 + @fastify/jwt (fast-jwt; EdDSA, issuer and",
      "  audience pinned; its verify cache on) + @fastify/reply-from (undici pool), verifying the link's own",
      "  EdDSA token with the token service's public key (from its JWKS), setting the same context headers.",
      "  It checks nothing beyond the JWT: no revocation, phase, scope, entitlement, limits, audit or minimising.",
      "- **(i)** the gateway as (c) but with in-process stores (memory rate limiter, record quota and change",
      "  feed): the single-instance configuration the bench used to headline.",
      "- **(j)** the gateway as (f) but its `BatchAuditWriter` re-reads the chain head under the lock for",
      "  every batch (`rememberHead: false`: begin, lock and head, insert, commit), the append as it was",
      "  before 2026-12-01: the before/after row for the one-round-trip append.",
      "",
      "**Micro-benchmarks** run in the runner's process after the servers have stopped:",
      "",
      "- gateway checks: what one `GET /pb/calls/next` costs the gateway beyond moving bytes, step by step,",
      "  over the real wiring without sockets, Hono or Web objects: the gatekeeper (the session from its cache, as",
      "  `/pb/*` takes it, then link, key, revocation, phase, scope, entitlement), the two rate limits (in-process",
      "  stores here: Redis is in the proxy rows), minimising a real phone bank answer (parse, allow-list,",
      "  stringify), the record quota, and preparing the audit event (IP hash, canonical form). Compare it",
      "  with the proxy CPU per request above: the rest is HTTP, framework and syscalls.",
      "- token verify: `createVerifier` with a `VerifyCache`, EdDSA tokens, sequential `await`s after a warm-up;",
      "  misses are distinct tokens; hits are one token alone in its cache, then, with the cache holding 10,000",
      "  entries, tokens taken in turn (many volunteers) and one token again and again (a busy volunteer). The",
      "  goal is judged on the worst of the three.",
      "- issuance: `POST /v1/links/batch` with 10,000 volunteers through the token service app (`app.request`,",
      "  no socket) over a fresh database, with the batching audit writer; links/s by response time, and also",
      "  until the batch's 10,001 audit events are written.",
      "- revocation: the token service and four gateways (in the runner's process, each with its own Redis",
      "  pub/sub connections, policy state and connection pool), a link revoked per `POST /v1/revocations`",
      "  (scope `link`); measured from the moment the call returns until all four gateways' checks answer",
      "  `revoked` (polled on every turn of the event loop). 0 when all already deny at return.",
      "- audit append: `benchAppend` (hash chain + inserts, batches of 1,000) on a fresh database.",
    ].join("\n"),
  );
  md.push("");
  md.push("## Proxy comparison");
  md.push("");
  if (ran(r.proxy)) {
    md.push(`Database behind the gateways: ${r.proxy.database}.`);
    md.push("");
    md.push(
      mdTable(
        ["system", "req/s", "req/s range", "p50 ms", "p99 ms", ...CPU_COLUMNS, "failures"],
        proxyRows(r),
        ["l", "r", "r", "r", "r", ...CPU_COLUMNS.map(() => "r" as const), "l"],
      ),
    );
    md.push("");
    md.push(
      mdTable(
        ["ratio", "value", "what"],
        ratios(r).map((x) => [x.name, fmt(x.value, 2), x.what]),
        ["l", "r", "l"],
      ),
    );
    md.push("");
    for (const n of r.proxy.notes) md.push(`- ${n}`);
    const on = (r.proxy.gatewayStats.auditOn ?? {}) as Record<string, unknown>;
    md.push(
      `- Audit writer of the audit-on gateway: ${String(on.auditErrors ?? "?")} write errors, ${String(on.auditPendingAtStop ?? "?")} events still queued at stop (then written by close()).`,
    );
    md.push("");
    md.push("Per round:");
    md.push("");
    md.push(
      mdTable(
        [
          "system",
          "round",
          "req/s",
          "p50 ms",
          "p90 ms",
          "p99 ms",
          "max ms",
          "CPU µs/req",
          ...CPU_COLUMNS.slice(1),
          "CPU steal",
          "non-2xx",
          "errors",
        ],
        r.proxy.systems.flatMap((s) =>
          s.runs.map((x, i) => [
            s.label,
            String(i + 1),
            fmt(x.rps, 0),
            String(x.p50),
            String(x.p90),
            String(x.p99),
            String(x.max),
            fmt(x.cpuUs, 0),
            ...cpuCells(x),
            Number.isFinite(x.steal) ? `${fmt(x.steal * 100, 1)}%` : "n/a",
            String(x.non2xx),
            String(x.errors),
          ]),
        ),
        [
          "l",
          "r",
          "r",
          "r",
          "r",
          "r",
          "r",
          "r",
          ...CPU_COLUMNS.slice(1).map(() => "r" as const),
          "r",
          "r",
          "r",
        ],
      ),
    );
  } else md.push(`Not measured (${whyNot(r.proxy)}).`);
  md.push("");
  md.push("## Micro-benchmarks");
  md.push("");
  md.push(mdTable(["benchmark", "result"], microRows(r), ["l", "r"]));
  const where = [r.issuance, r.revocation, r.audit]
    .filter(ran)
    .map((x) => (x as { database: string }).database);
  if (where.length > 0) {
    md.push("");
    md.push(
      `Databases: ${[...new Set(where.map((w) => w.replace(/ pl_bench_\w+| in \S+/, "")))].join(", ")} (a fresh one per benchmark, dropped afterwards).`,
    );
  }
  md.push("");
  md.push("## Goals");
  md.push("");
  md.push(
    mdTable(
      ["goal", "target", "measured", "verdict"],
      goals(r).map((g) => [g.name, g.target, g.value, verdict(g.met)]),
    ),
  );
  if (r.profile) {
    md.push("");
    md.push("## CPU profile of the gateway (this run, `--profile`)");
    md.push("");
    md.push("```");
    md.push(r.profile);
    md.push("```");
  }
  for (const section of r.extraSections ?? []) {
    md.push("");
    md.push(section);
  }
  if (r.analysis) {
    md.push("");
    md.push(r.analysis.trim());
  }
  md.push("");
  md.push("## Reproduce");
  md.push("");
  md.push(
    [
      "```sh",
      "pnpm bench            # full: ~3 rounds × 5 s per system, larger micro-benchmarks",
      "pnpm bench --quick    # 1 round × 2 s, smaller micro-benchmarks (under 2 minutes)",
      "pnpm bench --profile  # also profiles the gateway of (c)/(d) during the rounds and summarises it",
      "pnpm bench --quick --only=proxy --systems=b,c   # a subset; docs/benchmarks.md is left alone",
      "```",
      "",
      "Postgres and Redis come from `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`)",
      "and `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`); without Postgres the databases are embedded",
      "PGlite, without Redis the revocation benchmark is skipped.",
    ].join("\n"),
  );
  md.push("");
  return md.join("\n");
}

/** The soak's summary for the console. */
export function soakReport(r: SoakResult): string {
  return table(
    ["soak check", "value", "verdict"],
    r.verdicts.map((v) => [v.name, v.value, v.met ? "met" : "MISSED"]),
  );
}

/** docs/soak.md */
export function soakMarkdown(r: SoakResult, date: string): string {
  const mb = (n: number) => fmt(n / 2 ** 20, 0);
  return [
    "# Soak",
    "",
    `Generated by \`pnpm bench --soak --soak-minutes=${r.minutes} --soak-rate=${r.rate}\` on ${date}, on a 2-core machine shared`,
    "with other work: compare the samples with each other, not with another day's.",
    "",
    "The production shape (token service, phone bank and gateway each in its own process, Postgres,",
    "Redis for limits, quota and the change feed, durable audit) under a fixed request rate from a",
    "load process (autocannon, 16 connections, 10 s segments), one volunteer's session. All along,",
    "once a second: a 50-link batch and one more link issued, that link redeemed, used, revoked",
    "through the token service and probed until the gateway refuses it `revoked`. After each",
    "segment the gateway reports its RSS, heap and event-loop delay (`monitorEventLoopDelay`, since",
    "the previous sample). Decisions out = the load's answers + the probes; audit events in = the",
    "`access` rows in `audit_events` once the gateway has stopped (its writer flushes on stop).",
    "",
    mdTable(
      ["check", "value", "verdict"],
      r.verdicts.map((v) => [v.name, v.value, v.met ? "met" : "MISSED"]),
    ),
    "",
    `Churn: ${fmt(r.issued, 0)} links issued, ${fmt(r.revoked, 0)} revoked.`,
    "",
    mdTable(
      ["s", "req/s", "p99 ms", "RSS MB", "heap MB", "loop p50 ms", "loop p99 ms", "loop max ms", "non-2xx"],
      r.samples.map((s) => [
        fmt(s.at, 0),
        fmt(s.rps, 0),
        fmt(s.p99, 0),
        mb(s.rss),
        mb(s.heapUsed),
        fmt(s.loopP50, 1),
        fmt(s.loopP99, 1),
        fmt(s.loopMax, 0),
        String(s.non2xx),
      ]),
      ["r", "r", "r", "r", "r", "r", "r", "r", "r"],
    ),
  ].join("\n");
}

function growthRows(r: GrowthResult): { rows: string[][]; checks: [string, string, boolean][] } {
  const mb = (n: number) => `${fmt(n / 2 ** 20, 0)} MB`;
  const side = (name: string, s: GrowthResult["empty"]) => [
    name,
    fmt(s.links, 0),
    fmt(s.revocations, 0),
    `${fmt(s.startMs, 0)} ms`,
    mb(s.rssStart),
    mb(s.rssEnd),
    fmt(s.rps, 0),
    fmt(s.cpuUs, 0),
    fmt(s.p99, 0),
  ];
  const cpu = r.large.cpuUs / r.empty.cpuUs - 1;
  return {
    rows: [side("empty", r.empty), side("large", r.large)],
    checks: [
      [
        // Growth must not cost more than 10 %; a large deployment measured cheaper is the run's
        // noise (the spread between its rounds says how much), not a gain.
        "gateway CPU µs/req, large vs empty: at most 10 % more",
        `${cpu >= 0 ? "+" : "−"}${fmt(Math.abs(cpu) * 100, 1)} %`,
        cpu <= 0.1,
      ],
      ["gateway RSS (large, after the load) ≤ 300 MB", mb(r.large.rssEnd), r.large.rssEnd <= 300 * 2 ** 20],
      ["start-up (state load), large − empty", `${fmt(r.large.startMs - r.empty.startMs, 0)} ms`, true],
      [
        "issuance of a 10,000-link batch at that size",
        `${fmt(r.issuanceLinksPerSecond, 0)} links/s`,
        r.issuanceLinksPerSecond >= 20_000,
      ],
      ["GET /v1/links (first page), median of 5", `${fmt(r.listMs, 1)} ms`, true],
      ["GET /v1/links?campaignId=…&status=active, median of 5", `${fmt(r.listCampaignMs, 1)} ms`, true],
      ["GET /v1/campaigns/{id} (links counted by status), median of 5", `${fmt(r.campaignMs, 0)} ms`, true],
      [`audit verify (verifyStored, ${fmt(r.auditEvents, 0)} events)`, `${fmt(r.auditVerifyMs, 0)} ms`, true],
    ],
  };
}

const GROWTH_HEAD = [
  "deployment",
  "links",
  "revocations",
  "start-up",
  "RSS at start",
  "RSS after load",
  "req/s",
  "CPU µs/req",
  "p99 ms",
];

export function growthReport(r: GrowthResult): string {
  const { rows, checks } = growthRows(r);
  return [
    table(GROWTH_HEAD, rows),
    "",
    table(
      ["check", "value", "verdict"],
      checks.map(([n, v, m]) => [n, v, m ? "met" : "MISSED"]),
    ),
  ].join("\n");
}

/** docs/growth.md */
export function growthMarkdown(r: GrowthResult, date: string): string {
  const { rows, checks } = growthRows(r);
  return [
    "# Growth",
    "",
    `Generated by \`pnpm bench --only=growth\` on ${date}, on a 2-core machine shared with other work:`,
    "compare the two rows with each other (same run, rounds alternated), not with another day's.",
    "",
    "Two deployments in production shape side by side, each with its own Postgres database, token",
    "service process and gateway process (Redis for limits, quota and the change feed, durable",
    "audit); one phone bank and one load process serve both. The large one holds",
    `${fmt(r.large.links, 0)} links and ${fmt(r.large.revocations, 0)} revocations of all six scopes`,
    `(${Object.entries(r.revocationScopes)
      .map(([k, v]) => `${k} ${fmt(v, 0)}`)
      .join(", ")}),`,
    `written with \`generate_series\` in ${fmt(r.setupSeconds, 1)} s before its gateway starts, so the`,
    "gateway's start-up loads all of it (start-up is from fork to ready, loading the gateway's bundle included:",
    "the difference between the two rows is the state load). Watermark revocations target other",
    "campaigns, contests, phases and volunteers, so the load's own link stays valid while the",
    "revocation index holds every kind. Load: `GET /pb/calls/next` with one session, 32",
    "connections, rounds alternated; CPU µs/req from the gateway process's own `process.cpuUsage()`.",
    "",
    mdTable(GROWTH_HEAD, rows, ["l", "r", "r", "r", "r", "r", "r", "r", "r"]),
    "",
    mdTable(
      ["check", "value", "verdict"],
      checks.map(([n, v, m]) => [n, v, m ? "met" : "MISSED"]),
    ),
  ].join("\n");
}
