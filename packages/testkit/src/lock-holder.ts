import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("./hold-lock.ts", import.meta.url));
/** The repository root, where `tsx` resolves. */
export const REPO_ROOT = fileURLToPath(new URL("../../..", import.meta.url));

export interface LockHolderProcess {
  child: ChildProcess;
  pid: number;
  /** SIGTERM and wait: the holder releases the lock on its way out. */
  stop(): Promise<void>;
  /** SIGKILL and wait: the lock stays behind, stale. */
  kill(): Promise<void>;
}

/** Spawns a separate process that holds `dataDir`'s lock until stopped. */
export async function spawnLockHolder(
  dataDir: string,
  opts: { command?: string; ports?: Record<string, number> } = {},
): Promise<LockHolderProcess> {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", SCRIPT, dataDir, opts.command ?? "hold-lock", JSON.stringify(opts.ports ?? {})],
    { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  child.stderr?.on("data", (d) => {
    err += String(d);
  });
  await new Promise<void>((ok, ko) => {
    child.stdout?.on("data", (d) => {
      out += String(d);
      if (out.includes("held ")) ok();
    });
    child.once("exit", (code) => ko(new Error(`lock holder exited ${code}: ${err}`)));
  });
  const end = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, "exit");
    child.kill(signal);
    await exited;
  };
  return { child, pid: child.pid!, stop: () => end("SIGTERM"), kill: () => end("SIGKILL") };
}
