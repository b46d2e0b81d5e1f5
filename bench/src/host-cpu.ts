import { readdir, readFile } from "node:fs/promises";

/** Linux's clock tick (`getconf CLK_TCK`): 100 on every kernel Node supports. */
const TICK_US = 10_000;

/**
 * CPU time counters of this machine (Linux /proc), µs: the whole machine's (busy: neither idle
 * nor waiting on I/O; stolen by the hypervisor) and the sum over every process of the local
 * Postgres server (postmaster, backends, WAL writer, …) and of Redis. A server on another host,
 * or a backend that exits between two readings, is not counted; off Linux: undefined.
 */
export interface HostCpu {
  totalUs: number;
  busyUs: number;
  stealUs: number;
  postgresUs: number;
  redisUs: number;
}

export async function hostCpu(): Promise<HostCpu | undefined> {
  let stat: string;
  try {
    stat = await readFile("/proc/stat", "utf8");
  } catch {
    return undefined;
  }
  // cpu user nice system idle iowait irq softirq steal …
  const n = stat.split("\n", 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = n.reduce((a, b) => a + b, 0);
  const cpu: HostCpu = {
    totalUs: total * TICK_US,
    busyUs: (total - n[3]! - n[4]!) * TICK_US,
    stealUs: n[7]! * TICK_US,
    postgresUs: 0,
    redisUs: 0,
  };
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    let line: string;
    try {
      line = await readFile(`/proc/${pid}/stat`, "utf8");
    } catch {
      continue; // exited meanwhile
    }
    // pid (comm) state … : utime and stime are the 14th and 15th fields, the 12th and 13th after comm.
    const close = line.lastIndexOf(")");
    const comm = line.slice(line.indexOf("(") + 1, close);
    const server = comm === "postgres" ? "postgresUs" : comm === "redis-server" ? "redisUs" : null;
    if (!server) continue;
    const f = line.slice(close + 2).split(" ");
    cpu[server] += (Number(f[11]) + Number(f[12])) * TICK_US;
  }
  return cpu;
}

/** `b − a` for every counter; undefined when either reading is. */
export function cpuSince(a: HostCpu | undefined, b: HostCpu | undefined): HostCpu | undefined {
  if (!a || !b) return undefined;
  return {
    totalUs: b.totalUs - a.totalUs,
    busyUs: b.busyUs - a.busyUs,
    stealUs: b.stealUs - a.stealUs,
    postgresUs: b.postgresUs - a.postgresUs,
    redisUs: b.redisUs - a.redisUs,
  };
}
