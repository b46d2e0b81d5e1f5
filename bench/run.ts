/**
 * `pnpm bench [--quick] [--profile] [--audit-10m] [--only=proxy,checks,verify,issuance,revocation,audit,audit-scale] [--systems=b,c]`
 * `pnpm bench --soak [--soak-minutes=10] [--soak-rate=500]` (see src/soak.ts; writes docs/soak.md)
 * `pnpm bench --only=growth [--quick]` (see src/growth.ts; writes docs/growth.md)
 *
 * The proxy comparison (servers and load generator in separate processes), then in-process
 * micro-benchmarks; prints a summary and writes docs/benchmarks.md (full runs of every part only).
 * A missed goal never fails the run; only a crash does. Every child process is killed on the way
 * out, whatever happens.
 */
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { auditScaleMarkdown, benchAuditScale, replaceSection } from "./src/audit-scale.ts";
import { dropAll, postgresReachable, redisReachable } from "./src/db.ts";
import { runGrowth } from "./src/growth.ts";
import { benchAudit, benchChecks, benchIssuance, benchRevocation, benchVerify } from "./src/micro.ts";
import { killAll } from "./src/proc.ts";
import { formatSummary, summariseFile } from "./src/profile.ts";
import { runProxyBench, SYSTEM_LABELS, type SystemKey } from "./src/proxy.ts";
import {
  type BenchReport,
  consoleReport,
  growthMarkdown,
  growthReport,
  markdownReport,
  type NotRun,
  soakMarkdown,
  soakReport,
} from "./src/report.ts";
import { runSoak } from "./src/soak.ts";

const PARTS = ["proxy", "checks", "verify", "issuance", "revocation", "audit", "audit-scale"] as const;
type Part = (typeof PARTS)[number] | "growth";

const args = process.argv.slice(2);
const quick = args.includes("--quick");
const soak = args.includes("--soak");
const soakMinutes = Number(args.find((a) => a.startsWith("--soak-minutes="))?.slice(15) ?? "10");
const soakRate = Number(args.find((a) => a.startsWith("--soak-rate="))?.slice(12) ?? "500");
if (!(soakMinutes > 0) || !(soakRate > 0)) throw new Error("--soak-minutes and --soak-rate must be positive");
const profile = args.includes("--profile");
/** audit-scale at 10M events instead of 1M (hours of disk and time on a small machine). */
const audit10m = args.includes("--audit-10m");
const onlyArg = args.find((a) => a.startsWith("--only="))?.slice("--only=".length);
const only = new Set<Part>(onlyArg ? (onlyArg.split(",") as Part[]) : PARTS);
for (const p of only)
  if (p !== "growth" && !PARTS.includes(p))
    throw new Error(`--only: unknown part ${p} (${PARTS.join(", ")}, growth)`);
const systemsArg = args.find((a) => a.startsWith("--systems="))?.slice("--systems=".length);
const systems = systemsArg ? (systemsArg.split(",") as SystemKey[]) : undefined;
for (const k of systems ?? [])
  if (!(k in SYSTEM_LABELS)) throw new Error(`--systems: unknown system ${k} (a…j)`);
// The profile is the (c)/(d) gateway's: without either it would record an idle process.
if (args.includes("--profile") && systems && !systems.includes("c") && !systems.includes("d"))
  throw new Error("--profile records the gateway of (c) and (d): add c or d to --systems");
const unknown = args.filter(
  (a) =>
    a !== "--quick" &&
    a !== "--profile" &&
    a !== "--audit-10m" &&
    a !== "--soak" &&
    !a.startsWith("--soak-minutes=") &&
    !a.startsWith("--soak-rate=") &&
    !a.startsWith("--only=") &&
    !a.startsWith("--systems="),
);
if (unknown.length > 0) throw new Error(`unknown arguments: ${unknown.join(" ")}`);

const pgUrl = process.env.TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test";
const redisUrl = process.env.TEST_REDIS_URL || "redis://127.0.0.1:6379";
const root = fileURLToPath(new URL("..", import.meta.url));

const settings = quick
  ? {
      rounds: 1,
      duration: 2,
      warmup: 2,
      misses: 2_000,
      hits: 200_000,
      hotHits: 20_000,
      checkOps: 50_000,
      batches: 1,
      revocations: 50,
      auditEvents: 20_000,
      auditRuns: 1,
    }
  : {
      rounds: 3,
      duration: 5,
      warmup: 3,
      misses: 10_000,
      hits: 1_000_000,
      hotHits: 50_000,
      checkOps: 200_000,
      batches: 3,
      revocations: 100,
      auditEvents: 50_000,
      auditRuns: 3,
    };
const CONNECTIONS = 32;

const log = (line: string) => console.log(line);
const redact = (url: string) => {
  const u = new URL(url);
  if (u.password) u.password = "***";
  return u.toString();
};

async function part<T extends object>(name: Part, fn: () => Promise<T | NotRun>): Promise<T | NotRun> {
  if (!only.has(name)) return { skipped: "not selected (--only)" };
  const t0 = performance.now();
  log(`\n== ${name}`);
  try {
    const r = await fn();
    log(`   done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    return r;
  } catch (err) {
    // A part that crashes is reported; the others still run. The exit code says it crashed.
    process.exitCode = 1;
    const message = err instanceof Error ? err.message : String(err);
    console.error(`   ${name} failed: ${err instanceof Error ? (err.stack ?? message) : message}`);
    return { error: message.split("\n")[0]! };
  }
}

async function mainSoak(): Promise<void> {
  const [pg, redis] = await Promise.all([postgresReachable(pgUrl), redisReachable(redisUrl)]);
  if (!pg || !redis) throw new Error("--soak needs Postgres and Redis (the production shape)");
  log(`Phaselock soak: ${soakMinutes} min at ${soakRate} req/s, churn every second`);
  const r = await runSoak({ minutes: soakMinutes, rate: soakRate, adminUrl: pgUrl, redisUrl, log });
  log("");
  log(soakReport(r));
  if (r.verdicts.some((v) => !v.met)) process.exitCode = 1;
  const out = join(root, "docs", "soak.md");
  await writeFile(out, `${soakMarkdown(r, new Date().toISOString())}\n`);
  log(`\nwrote ${out}`);
}

/** `--only=growth`: minutes of setup, so never part of the default run; writes docs/growth.md. */
async function mainGrowth(): Promise<void> {
  const [pg, redis] = await Promise.all([postgresReachable(pgUrl), redisReachable(redisUrl)]);
  if (!pg || !redis) throw new Error("--only=growth needs Postgres and Redis (the production shape)");
  log(`Phaselock growth bench (${quick ? "quick: 100,000 links" : "1,000,000 links"}, 100,000 revocations)`);
  const r = await runGrowth({
    adminUrl: pgUrl,
    redisUrl,
    rounds: settings.rounds,
    duration: settings.duration,
    links: quick ? 100_000 : undefined,
    auditEvents: quick ? 10_000 : undefined,
    log,
  });
  log("");
  log(growthReport(r));
  if (!quick) {
    const out = join(root, "docs", "growth.md");
    await writeFile(out, `${growthMarkdown(r, new Date().toISOString())}\n`);
    log(`\nwrote ${out}`);
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  const [pg, redis] = await Promise.all([postgresReachable(pgUrl), redisReachable(redisUrl)]);
  const adminUrl = pg ? pgUrl : undefined;
  log(
    `Phaselock bench (${quick ? "quick" : "full"}): Postgres ${pg ? `at ${redact(pgUrl)}` : "unreachable, using embedded PGlite"}; Redis ${redis ? `at ${redact(redisUrl)}` : "unreachable"}`,
  );

  const profileDir = profile ? await mkdtemp(join(os.tmpdir(), "pl-bench-prof-")) : undefined;
  const profilePath = profileDir ? join(profileDir, "gateway-audit-on.cpuprofile") : undefined;
  const proxy = await part("proxy", () =>
    runProxyBench({
      rounds: settings.rounds,
      duration: settings.duration,
      warmup: settings.warmup,
      connections: CONNECTIONS,
      adminUrl,
      redisUrl: redis ? redisUrl : undefined,
      profilePath,
      systems,
      log,
    }),
  );
  let profileText: string | undefined;
  if (profilePath && existsSync(profilePath)) {
    profileText = formatSummary(await summariseFile(profilePath, 20));
    log(
      `\nCPU profile of the (c)/(d) gateway (audit on) over the measured rounds: ${profilePath}\n${profileText}`,
    );
  }

  const checks = await part("checks", () => benchChecks({ adminUrl, ops: settings.checkOps }));
  const verify = await part("verify", () =>
    benchVerify({ misses: settings.misses, hits: settings.hits, hotHits: settings.hotHits }),
  );
  const issuance = await part("issuance", () =>
    benchIssuance({ adminUrl, batchSize: 10_000, batches: settings.batches }),
  );
  const revocation = await part("revocation", async () => {
    if (!redis) {
      const skipped = `Redis unreachable at ${redact(redisUrl)}`;
      log(`   skipped: ${skipped}`);
      return { skipped };
    }
    return benchRevocation({ adminUrl, redisUrl, count: settings.revocations });
  });
  const audit = await part("audit", () =>
    benchAudit({ adminUrl, events: settings.auditEvents, runs: settings.auditRuns }),
  );

  const auditScale = await part("audit-scale", () =>
    benchAuditScale({ adminUrl, events: audit10m ? 10_000_000 : quick ? 200_000 : 1_000_000, log }),
  );

  const cpus = os.cpus();
  const analysisPath = join(root, "bench", "analysis.md");
  const report: BenchReport = {
    mode: quick ? "quick" : "full",
    machine: {
      cpus: `${cpus[0]?.model.trim() ?? "unknown"} @ ${cpus[0]?.speed ?? "?"} MHz`,
      cores: cpus.length,
      memory: `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
      node: process.version,
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      date: new Date().toISOString(),
    },
    method: {
      rounds: settings.rounds,
      duration: settings.duration,
      warmup: settings.warmup,
      connections: CONNECTIONS,
      postgres: pg ? `${redact(pgUrl)} (reachable)` : "unreachable: embedded PGlite",
      redis: redis ? `${redact(redisUrl)} (reachable)` : "unreachable: revocation benchmark skipped",
    },
    elapsedSeconds: (performance.now() - started) / 1000,
    proxy,
    checks,
    verify,
    issuance,
    revocation,
    audit,
    extraSections: [auditScaleMarkdown(auditScale)],
    profile: profileText,
    analysis: existsSync(analysisPath) ? await readFile(analysisPath, "utf8") : undefined,
  };

  log("");
  log(consoleReport(report));
  if (only.size === PARTS.length && !systems) {
    const out = join(root, "docs", "benchmarks.md");
    await writeFile(out, markdownReport(report));
    log(`\nwrote ${out}`);
  } else if (only.size === 1 && only.has("audit-scale") && !quick && "events" in auditScale) {
    // The audit-at-scale section alone (its own long run): the rest of the file is kept.
    const out = join(root, "docs", "benchmarks.md");
    const doc = existsSync(out) ? await readFile(out, "utf8") : "# Benchmarks\n";
    await writeFile(out, replaceSection(doc, auditScaleMarkdown(auditScale)));
    log(`\nwrote the "Audit log at scale" section of ${out}`);
  } else {
    log("\n(--only/--systems: docs/benchmarks.md left as it was)");
  }
  if (profileDir && !profileText) await rm(profileDir, { recursive: true, force: true });
}

let cleaning: Promise<void> | undefined;
const cleanup = () => {
  cleaning ??= (async () => {
    killAll();
    await dropAll();
  })();
  return cleaning;
};

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    console.error(`\nbench: ${signal}, stopping`);
    void cleanup().finally(() => process.exit(130));
  });
}

try {
  await (soak ? mainSoak() : only.has("growth") ? mainGrowth() : main());
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  await cleanup();
}
// Open handles (pools, timers) must not keep a finished run alive.
process.exit(process.exitCode ?? 0);
