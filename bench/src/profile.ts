/**
 * Summarises a V8 `.cpuprofile` (from `node --cpu-prof`): where the busy samples went, by
 * function (self and inclusive time) and by module. Usable alone:
 * `tsx bench/src/profile.ts <file.cpuprofile>`.
 */
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileRow {
  name: string;
  where: string;
  ms: number;
  /** share of busy (non-idle) time */
  share: number;
}

export interface ProfileSummary {
  busyMs: number;
  idleMs: number;
  self: ProfileRow[];
  inclusive: ProfileRow[];
  modules: ProfileRow[];
}

const IDLE = new Set(["(idle)", "(program)"]);

/** `hono/dist/…` for packages, `services/gateway/src/x.ts` for our code, `node:internal/…` for Node. */
function moduleOf(url: string): string {
  if (!url) return "(native/V8)";
  const nm = url.lastIndexOf("/node_modules/");
  if (nm !== -1) {
    const rest = url.slice(nm + "/node_modules/".length).split("/");
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  if (url.startsWith("node:")) return url.split("/").slice(0, 2).join("/");
  const m = /\/(services|packages|bench)\/(.+)$/.exec(url);
  return m ? `${m[1]}/${m[2]}` : url;
}

function shortWhere(url: string, line: number): string {
  const m = moduleOf(url);
  const file = url.split("/").pop() ?? "";
  return url ? `${m}${m.endsWith(file) ? "" : ` ${file}`}:${line + 1}` : m;
}

export function summarise(profile: CpuProfile, top = 20): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const key = (n: ProfileNode) =>
    `${n.callFrame.functionName || "(anonymous)"}\u0000${n.callFrame.url}:${n.callFrame.lineNumber}`;
  let idleUs = 0;
  let busyUs = 0;
  const self = new Map<string, number>();
  const modules = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    if (IDLE.has(n.callFrame.functionName)) {
      idleUs += us;
      continue;
    }
    busyUs += us;
    self.set(key(n), (self.get(key(n)) ?? 0) + us);
    const mod =
      n.callFrame.functionName === "(garbage collector)" ? "(garbage collector)" : moduleOf(n.callFrame.url);
    modules.set(mod, (modules.get(mod) ?? 0) + us);
    // Inclusive: credit every distinct function on the stack once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = key(byId.get(cur)!);
      if (seen.has(k)) continue;
      seen.add(k);
      inclusive.set(k, (inclusive.get(k) ?? 0) + us);
    }
  }
  const rows = (m: Map<string, number>, split: boolean): ProfileRow[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, us]) => {
        const [name, rest] = split ? (k.split("\u0000") as [string, string]) : [k, ""];
        const colon = rest.lastIndexOf(":");
        const where = split ? shortWhere(rest.slice(0, colon), Number(rest.slice(colon + 1))) : "";
        return { name, where, ms: us / 1000, share: busyUs > 0 ? us / busyUs : 0 };
      });
  return {
    busyMs: busyUs / 1000,
    idleMs: idleUs / 1000,
    self: rows(self, true),
    inclusive: rows(inclusive, true).filter((r) => r.name !== "(root)"),
    modules: rows(modules, false),
  };
}

export async function summariseFile(path: string, top = 20): Promise<ProfileSummary> {
  return summarise(JSON.parse(await readFile(path, "utf8")) as CpuProfile, top);
}

export function formatSummary(s: ProfileSummary): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)}%`;
  const lines = [
    `busy ${s.busyMs.toFixed(0)} ms, idle ${s.idleMs.toFixed(0)} ms`,
    "",
    "By module (self time):",
  ];
  for (const r of s.modules) lines.push(`  ${pct(r.share).padStart(6)}  ${r.name}`);
  lines.push("", "Top functions, self time:");
  for (const r of s.self) lines.push(`  ${pct(r.share).padStart(6)}  ${r.name}  (${r.where})`);
  lines.push("", "Top functions, inclusive time:");
  for (const r of s.inclusive) lines.push(`  ${pct(r.share).padStart(6)}  ${r.name}  (${r.where})`);
  return lines.join("\n");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const file = process.argv[2];
  if (!file) {
    console.error("usage: tsx bench/src/profile.ts <file.cpuprofile> [top]");
    process.exit(2);
  }
  console.log(formatSummary(await summariseFile(file, Number(process.argv[3] ?? 25))));
}
