/**
 * A Redis Cluster of this test file's own, for failure tests that stop a node: the shared
 * cluster (`TEST_REDIS_CLUSTER_URL`) stays up for every other file. Three masters, each with
 * `replicas` replicas (default none), nothing persisted but each node's `nodes.conf`, so a stopped
 * node started again rejoins with its slots. Needs `redis-server` and `redis-cli` on PATH (as the
 * shared cluster does).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);

export interface PrivateRedisCluster {
  /** `redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3` */
  url: string;
  ports: number[];
  /** The port of the master that serves `key`'s slot (a channel hashes like a key). */
  portFor(key: string): Promise<number>;
  /** Waits until every running node reports `cluster_state:ok` (e.g. after a failover). */
  healthy(): Promise<void>;
  /** Stops the node on `port` (SIGTERM) and waits until it has exited. */
  stop(port: number): Promise<void>;
  /** Starts the node on `port` again and waits until the cluster reports `cluster_state:ok`. */
  start(port: number): Promise<void>;
  close(): Promise<void>;
}

const cli = async (port: number, ...args: string[]): Promise<string> =>
  (await run("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...args], { timeout: 10_000 })).stdout;

/** A port free for the node and for its cluster bus (port + 10000). */
async function freePortPair(): Promise<number> {
  const free = (port: number) =>
    new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once("error", () => resolve(false));
      s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
    });
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 25_000);
    if ((await free(port)) && (await free(port + 10_000))) return port;
  }
  throw new Error("no free port pair for a Redis Cluster node");
}

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`redis cluster: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const stateOk = async (port: number) => (await cli(port, "cluster", "info")).includes("cluster_state:ok");

export async function startPrivateRedisCluster(
  opts: { replicas?: number } = {},
): Promise<PrivateRedisCluster> {
  const replicas = opts.replicas ?? 0;
  const dir = await mkdtemp(join(tmpdir(), "phaselock-cluster-"));
  const ports: number[] = [];
  for (let i = 0; i < 3 * (1 + replicas); i++) {
    let p = await freePortPair();
    while (ports.includes(p) || ports.includes(p + 10_000) || ports.includes(p - 10_000))
      p = await freePortPair();
    ports.push(p);
  }
  const nodes = new Map<number, ChildProcess>();
  const launch = async (port: number) => {
    const child = spawn(
      "redis-server",
      [
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        join(dir, `nodes-${port}.conf`),
        "--cluster-node-timeout",
        "1000",
        "--dir",
        dir,
        "--save",
        "",
        "--appendonly",
        "no",
      ],
      { stdio: "ignore" },
    );
    nodes.set(port, child);
    await until(`node ${port} to answer`, async () => (await cli(port, "ping")).trim() === "PONG");
  };
  const close = async () => {
    for (const child of nodes.values()) if (child.exitCode === null) child.kill("SIGKILL");
    nodes.clear();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await Promise.all(ports.map(launch));
    await run(
      "redis-cli",
      [
        "--cluster",
        "create",
        ...ports.map((p) => `127.0.0.1:${p}`),
        "--cluster-replicas",
        String(replicas),
        "--cluster-yes",
      ],
      { timeout: 30_000 },
    );
    for (const p of ports) await until(`node ${p} to report cluster_state:ok`, () => stateOk(p));
    // Every replica in sync with its master, so a failover has someone to promote.
    for (const p of ports)
      await until(`node ${p} to finish its first sync`, async () => {
        const info = await cli(p, "info", "replication");
        return info.includes("role:master") || info.includes("master_link_status:up");
      });
  } catch (err) {
    await close();
    throw err;
  }

  return {
    url: `redis+cluster://${ports.map((p) => `127.0.0.1:${p}`).join(",")}`,
    ports,
    async portFor(key) {
      const live = ports.find((p) => nodes.get(p)?.exitCode === null) ?? ports[0]!;
      const slot = Number((await cli(live, "cluster", "keyslot", key)).trim());
      const slots = (await cli(live, "cluster", "nodes")).split("\n");
      for (const line of slots) {
        const [, address, flags, , , , , , ...ranges] = line.split(" ");
        if (!flags?.includes("master") || flags.includes("fail")) continue;
        for (const range of ranges) {
          const [lo, hi = lo] = range.split("-").map(Number);
          if (slot >= lo! && slot <= hi!) return Number(address!.split("@")[0]!.split(":")[1]);
        }
      }
      throw new Error(`redis cluster: no master serves slot ${slot}`);
    },
    async healthy() {
      for (const p of ports)
        if (nodes.get(p)?.exitCode === null)
          await until(`node ${p} to report cluster_state:ok`, () => stateOk(p));
    },
    async stop(port) {
      const child = nodes.get(port);
      if (!child || child.exitCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    },
    async start(port) {
      await launch(port);
      for (const p of ports) await until(`node ${p} to report cluster_state:ok`, () => stateOk(p));
    },
    close,
  };
}
