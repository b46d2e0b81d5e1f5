/**
 * The audit log at scale (issue 12, items 4 and 6): appends into the partitioned `audit_events`
 * up to 1M events (10M with `--audit-10m`), in slices of 100k, so the first and last slices' rates
 * show whether appends slow as the table grows; the time to sign a checkpoint of the whole tree
 * from scratch, to export it, and to verify the export offline against that checkpoint; and what
 * group commit adds to an allowed answer (how long `recordDurable` waits) next to the batched
 * path (`record`, which does not wait).
 */

import { once } from "node:events";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import {
  type AuditEventInput,
  appendEvents,
  BatchAuditWriter,
  Checkpointer,
  ed25519FromSeed,
  exportEvents,
  parseSignerKey,
  signerKeyString,
  verifierKeyString,
  verifyCheckpoint,
} from "@phaselock/audit";
import { verifyExportAgainst } from "@phaselock/audit/cli/verify";
import { systemClock } from "@phaselock/core";
import { type Db, queryRows } from "@phaselock/db";
import { sql } from "drizzle-orm";
import { createScratchDb } from "./db.ts";

export interface AuditScaleResult {
  database: string;
  events: number;
  /** events/s of each 100k slice, in order */
  sliceRates: number[];
  firstSliceRate: number;
  lastSliceRate: number;
  overallRate: number;
  /**
   * The same 10k-event bursts, alternating between a near-empty database and the full one (so a
   * busy machine slows both alike): median events/s of each.
   */
  paired: { smallRate: number; largeRate: number; rounds: number; burst: number };
  /** 1-minute load average at the start and end of the run (other work on the machine) */
  load: [number, number];
  tableBytes: number;
  checkpointSeconds: number;
  exportSeconds: number;
  exportBytes: number;
  verifySeconds: number;
  verified: boolean;
  groupCommit: GroupCommitRow[];
}

export interface GroupCommitRow {
  concurrency: number;
  answers: number;
  /** ms an allowed answer waits for its event to commit (recordDurable) */
  durableP50: number;
  durableP99: number;
  /** ms on the batched path (record(): queued, not awaited) */
  batchedP50: number;
  batchedP99: number;
  /** events per INSERT transaction, on average */
  perCommit: number;
}

const SLICE = 100_000;
const BATCH = 1_000;

const event = (i: number, t0: number): AuditEventInput => ({
  type: "access",
  at: new Date(t0 + i),
  actor: `vol-${i % 97}`,
  campaignId: "bench-campaign",
  linkId: `lnk_bench${i % 1_000}`,
  decision: i % 10 === 0 ? "deny" : "allow",
  reason: i % 10 === 0 ? "scope_denied" : null,
  data: {
    route: "GET /members/:id",
    pathHash: "5f2b1c9d8e7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c",
    requestId: `req_${i.toString(36)}`,
    ipHash: "0123456789abcdef0123456789abcdef",
    status: 200,
    record: `m_${i % 5_000}`,
  },
});

const pct = (sorted: number[], p: number): number =>
  sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;

export async function benchAuditScale(opts: {
  adminUrl: string | undefined;
  events: number;
  log: (line: string) => void;
}): Promise<AuditScaleResult> {
  const loadStart = loadavg()[0] ?? 0;
  const db = await createScratchDb("auditscale", opts.adminUrl);
  const dir = await mkdtemp(join(tmpdir(), "pl-bench-audit-"));
  try {
    const d = db.handle.db;
    const t0 = Date.UTC(2026, 0, 1);
    const sliceRates: number[] = [];
    const started = performance.now();
    for (let done = 0; done < opts.events; done += SLICE) {
      const n = Math.min(SLICE, opts.events - done);
      const s = performance.now();
      for (let i = 0; i < n; i += BATCH) {
        const k = Math.min(BATCH, n - i);
        await appendEvents(
          d,
          Array.from({ length: k }, (_, j) => event(done + i + j, t0)),
        );
      }
      sliceRates.push(n / ((performance.now() - s) / 1000));
      opts.log(`   appended ${done + n} events (${Math.round(sliceRates.at(-1)!)} events/s in this slice)`);
    }
    const overallRate = opts.events / ((performance.now() - started) / 1000);
    const paired = await pairedAppends(d, opts.adminUrl, t0 + opts.events, opts.log);
    const [size] = await queryRows<{ n: string }>(
      d,
      sql`select coalesce(sum(pg_total_relation_size(inhrelid)), 0)::text as n from pg_inherits
          where inhparent = 'audit_events'::regclass`,
    );
    const tableBytes = Number(size?.n ?? 0);

    // A checkpoint of the whole tree from scratch (the first one a new log signs).
    const seed = new Uint8Array(32).fill(7);
    const origin = "bench.phaselock/audit";
    const signer = parseSignerKey(signerKeyString(origin, seed));
    const vkey = verifierKeyString(origin, ed25519FromSeed(seed).publicKey);
    let c = performance.now();
    const cp = await new Checkpointer({ db: d, signer, clock: systemClock, dir: undefined }).checkpoint();
    const checkpointSeconds = (performance.now() - c) / 1000;
    if (!cp) throw new Error("no checkpoint signed");

    c = performance.now();
    const file = join(dir, "audit.ndjson");
    const out = createWriteStream(file);
    let exportBytes = 0;
    await exportEvents(d, {
      batchSize: 5_000,
      write: async (line) => {
        exportBytes += Buffer.byteLength(line) + 1;
        if (!out.write(`${line}\n`)) await once(out, "drain");
      },
    });
    out.end();
    await once(out, "close");
    const exportSeconds = (performance.now() - c) / 1000;
    opts.log(`   export: ${opts.events} events in ${exportSeconds.toFixed(1)} s`);

    const opened = verifyCheckpoint(cp.note, vkey);
    if (!opened.ok) throw new Error("checkpoint does not verify");
    c = performance.now();
    const verified = await verifyExportAgainst(
      createInterface({
        input: createReadStream(file, { encoding: "utf8" }),
        crlfDelay: Number.POSITIVE_INFINITY,
      }),
      [{ ...opened.checkpoint, extensions: [], file: "cp" }],
    );
    const verifySeconds = (performance.now() - c) / 1000;
    opts.log(
      `   offline verify against the checkpoint: ${verifySeconds.toFixed(1)} s (${verified.ok ? "ok" : "broken"})`,
    );
    await rm(file, { force: true });

    const groupCommit = await benchGroupCommit(d, opts.log);
    return {
      database: db.describe,
      events: opts.events,
      sliceRates,
      firstSliceRate: sliceRates[0] ?? 0,
      lastSliceRate: sliceRates.at(-1) ?? 0,
      overallRate,
      paired,
      load: [loadStart, loadavg()[0] ?? 0],
      tableBytes,
      checkpointSeconds,
      exportSeconds,
      exportBytes,
      verifySeconds,
      verified: verified.ok,
      groupCommit,
    };
  } finally {
    await rm(dir, { recursive: true, force: true });
    await db.drop();
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
};

/** Alternating bursts into a fresh database and into `large`: does the table's size slow appends? */
async function pairedAppends(
  large: Db,
  adminUrl: string | undefined,
  t0: number,
  log: (line: string) => void,
): Promise<AuditScaleResult["paired"]> {
  const burst = 10_000;
  const rounds = 5;
  const small = await createScratchDb("auditsmall", adminUrl);
  try {
    const rate = async (db: Db, base: number) => {
      const s = performance.now();
      for (let i = 0; i < burst; i += BATCH) {
        await appendEvents(
          db,
          Array.from({ length: BATCH }, (_, j) => event(base + i + j, t0)),
        );
      }
      return burst / ((performance.now() - s) / 1000);
    };
    const smallRates: number[] = [];
    const largeRates: number[] = [];
    for (let r = 0; r < rounds; r++) {
      smallRates.push(await rate(small.handle.db, r * burst));
      largeRates.push(await rate(large, r * burst));
    }
    const out = { smallRate: median(smallRates), largeRate: median(largeRates), rounds, burst };
    log(
      `   paired bursts: ${Math.round(out.smallRate)} events/s into a near-empty table, ${Math.round(out.largeRate)} into the full one`,
    );
    return out;
  } finally {
    await small.drop();
  }
}

/**
 * `concurrency` answers in a closed loop for a fixed count, each recording its event as the
 * gateway does for an allowed answer (recordDurable: waits for the commit) or a denial (record).
 */
async function benchGroupCommit(db: Db, log: (line: string) => void): Promise<GroupCommitRow[]> {
  const rows: GroupCommitRow[] = [];
  for (const concurrency of [1, 16, 64]) {
    const answers = concurrency === 1 ? 500 : 4_000;
    const run = async (durable: boolean): Promise<{ ms: number[]; commits: number }> => {
      const writer = new BatchAuditWriter({ db, clock: systemClock });
      const ms: number[] = [];
      let next = 0;
      const t0 = Date.now();
      const worker = async () => {
        while (next < answers) {
          const i = next++;
          const s = performance.now();
          if (durable) await writer.recordDurable(event(i, t0) as never);
          else writer.record(event(i, t0) as never);
          ms.push(performance.now() - s);
        }
      };
      const from = await headSeq(db);
      await Promise.all(Array.from({ length: concurrency }, worker));
      await writer.close();
      return { ms: ms.sort((a, b) => a - b), commits: await commitCount(db, from) };
    };
    const durable = await run(true);
    const batched = await run(false);
    const row = {
      concurrency,
      answers,
      durableP50: pct(durable.ms, 50),
      durableP99: pct(durable.ms, 99),
      batchedP50: pct(batched.ms, 50),
      batchedP99: pct(batched.ms, 99),
      perCommit: durable.commits > 0 ? answers / durable.commits : answers,
    };
    log(
      `   group commit, ${concurrency} concurrent: durable p50 ${row.durableP50.toFixed(2)} ms p99 ${row.durableP99.toFixed(2)} ms; batched p50 ${row.batchedP50.toFixed(3)} ms (${row.perCommit.toFixed(1)} events per insert)`,
    );
    rows.push(row);
  }
  return rows;
}

/** INSERT transactions so far (distinct xmin of the rows after `afterSeq`). */
async function commitCount(db: Db, afterSeq: number): Promise<number> {
  const [row] = await queryRows<{ n: number }>(
    db,
    sql`select count(distinct xmin::text)::int as n from audit_events where seq > ${afterSeq}`,
  );
  return row?.n ?? 0;
}

async function headSeq(db: Db): Promise<number> {
  const [row] = await queryRows<{ n: string }>(
    db,
    sql`select coalesce(max(seq), 0)::text as n from audit_events`,
  );
  return Number(row?.n ?? 0);
}

const f = (n: number, digits = 0) =>
  n.toLocaleString("en-GB", { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** The section of docs/benchmarks.md. */
export function auditScaleMarkdown(r: AuditScaleResult | { skipped?: string; error?: string }): string {
  const md: string[] = ["## Audit log at scale", ""];
  if (!("events" in r)) {
    md.push(`Not run: ${r.skipped ?? r.error ?? "unknown"}.`);
    return md.join("\n");
  }
  const slowdown = r.firstSliceRate > 0 ? r.lastSliceRate / r.firstSliceRate : 0;
  md.push(
    `${f(r.events)} gateway-shaped events appended to the partitioned \`audit_events\` (${r.database}) by \`appendEvents\` in batches of ${f(BATCH)} (chain lock, head read, hashing, one \`unnest\` insert per chunk), then a checkpoint of the whole tree signed from scratch, an NDJSON export, and the offline verifier over that export against the checkpoint (\`verifyExportAgainst\`, what \`pnpm audit:verify-export --key --checkpoint\` runs).`,
    "",
  );
  md.push("| measure | value |", "| --- | --: |");
  md.push(`| append rate, first 100k | ${f(r.firstSliceRate)} events/s |`);
  md.push(
    `| append rate, last 100k | ${f(r.lastSliceRate)} events/s (${f(slowdown * 100)} % of the first) |`,
  );
  md.push(`| append rate, overall | ${f(r.overallRate)} events/s |`);
  md.push(
    `| paired ${f(r.paired.burst)}-event bursts (median of ${r.paired.rounds}), near-empty table | ${f(r.paired.smallRate)} events/s |`,
  );
  md.push(
    `| the same bursts, into the ${f(r.events)}-event table | ${f(r.paired.largeRate)} events/s (${f((r.paired.largeRate / Math.max(1, r.paired.smallRate)) * 100)} % of the near-empty table's) |`,
  );
  md.push(
    `| table + indexes | ${f(r.tableBytes / 2 ** 20)} MiB (${f(r.tableBytes / r.events)} bytes/event) |`,
  );
  md.push(`| checkpoint of ${f(r.events)} leaves from scratch | ${f(r.checkpointSeconds, 1)} s |`);
  md.push(`| export | ${f(r.exportSeconds, 1)} s (${f(r.exportBytes / 2 ** 20)} MiB) |`);
  md.push(
    `| offline verify against the checkpoint | ${f(r.verifySeconds, 1)} s (${r.verified ? "ok" : "BROKEN"}) |`,
  );
  md.push("");
  md.push(`Append rate per 100k slice (events/s): ${r.sliceRates.map((x) => f(x)).join(", ")}.`);
  md.push("");
  md.push(
    `The machine's 1-minute load average was ${f(r.load[0], 1)} at the start and ${f(r.load[1], 1)} at the end of this part: on a shared machine the slice rates drift with other work, so the paired bursts (alternating between the two tables, so both see the same load) are the measure of whether appends slow as the table grows. By design an append reads the chain head with one backward step of the primary-key index and writes B-tree index entries (logarithmic in the table's size), in the current month's partition only.`,
  );
  md.push("");
  md.push(
    "Group commit: how long an allowed answer waits for its event to commit (`recordDurable`: joins the queue, the next insert starts within 2 ms or at once when a batch is full) next to a denial's `record()` (queued, not awaited), with that many answers in flight at once:",
    "",
  );
  md.push(
    "| answers in flight | answers | durable p50 | durable p99 | batched p50 | batched p99 | events per insert |",
    "| --: | --: | --: | --: | --: | --: | --: |",
  );
  for (const g of r.groupCommit) {
    md.push(
      `| ${g.concurrency} | ${f(g.answers)} | ${f(g.durableP50, 2)} ms | ${f(g.durableP99, 2)} ms | ${f(g.batchedP50, 3)} ms | ${f(g.batchedP99, 3)} ms | ${f(g.perCommit, 1)} |`,
    );
  }
  md.push("");
  md.push(
    "10M events: `pnpm bench --only=audit-scale --audit-10m` (about ten times the time and disk above; not run by default on a small machine).",
  );
  return md.join("\n");
}

/**
 * Replaces (or appends) this section in an existing docs/benchmarks.md: for a full run of
 * `--only=audit-scale`, which leaves the other sections as the last full run wrote them.
 */
export function replaceSection(doc: string, section: string): string {
  const heading = "## Audit log at scale";
  const start = doc.indexOf(`\n${heading}\n`);
  if (start === -1) {
    const reproduce = doc.indexOf("\n## Reproduce\n");
    return reproduce === -1
      ? `${doc.trimEnd()}\n\n${section}\n`
      : `${doc.slice(0, reproduce)}\n${section}\n${doc.slice(reproduce)}`;
  }
  const next = doc.indexOf("\n## ", start + heading.length + 2);
  return `${doc.slice(0, start)}\n${section}\n${next === -1 ? "" : doc.slice(next)}`;
}
