import { type ChildProcess, fork } from "node:child_process";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { bundle, NODE_FLAGS } from "../../scripts/build.ts";
import type { FromChild, LoadOptions, LoadResult, ProcessStats, ToChild } from "./ipc.ts";

/**
 * Children run on Node's own type stripping; a Phaselock service (`bundle: true`) runs as one
 * esbuild bundle of its child script with the image's Node flags, as `pnpm build` and the image's
 * entrypoint run them, so that its memory and start-up are what a deployment sees. Bundles go to
 * bench/.build/ once per run.
 */
const BUILD_DIR = fileURLToPath(new URL("../.build/", import.meta.url));
const bundles = new Map<string, Promise<string>>();
function bundled(script: string): Promise<string> {
  let out = bundles.get(script);
  if (!out) {
    const file = join(BUILD_DIR, basename(script).replace(/\.ts$/, ".mjs"));
    out = bundle(script, file).then(() => file);
    bundles.set(script, out);
  }
  return out;
}

const live = new Set<ChildProcess>();

/** Kills every child still running, at once. Synchronous, so it is safe in an `exit` handler. */
export function killAll(): void {
  for (const c of live) {
    try {
      c.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }
  live.clear();
}

// Whatever happens to the runner (a crash, process.exit), no child outlives it.
process.on("exit", killAll);

export interface ChildOptions {
  /** for messages */
  name: string;
  /** absolute path of the child's script */
  script: string;
  /** extra Node flags, e.g. `--cpu-prof` */
  nodeFlags?: string[];
  /** run the script as one bundle (a Phaselock service, as deployed); default Node's own type stripping */
  bundle?: boolean;
  startTimeoutMs?: number;
}

/** A server or the load driver in its own process, driven over IPC. */
export class Child {
  readonly name: string;
  readonly port: number;
  readonly #proc: ChildProcess;
  readonly #exited: Promise<void>;
  readonly #pending = new Map<number, { resolve: (r: never) => void; reject: (e: Error) => void }>();
  #nextId = 1;
  #stats: Record<string, unknown> | undefined;

  private constructor(name: string, proc: ChildProcess, port: number, exited: Promise<void>) {
    this.name = name;
    this.#proc = proc;
    this.port = port;
    this.#exited = exited;
    proc.on("message", (m: FromChild) => {
      if (
        m.type === "load-result" ||
        m.type === "load-failed" ||
        m.type === "cpu" ||
        m.type === "profile" ||
        m.type === "stats"
      ) {
        const p = this.#pending.get(m.id);
        if (!p) return;
        this.#pending.delete(m.id);
        if (m.type === "load-result") p.resolve(m.result as never);
        else if (m.type === "cpu") p.resolve((m.user + m.system) as never);
        else if (m.type === "stats") {
          const { type: _t, id: _i, ...stats } = m;
          p.resolve(stats as never);
        } else if (m.type === "profile" && m.ok) p.resolve(undefined as never);
        else p.reject(new Error(`${name}: ${"message" in m ? m.message : "failed"}`));
      } else if (m.type === "stopped") {
        this.#stats = m.stats;
      }
    });
    void exited.then(() => {
      for (const p of this.#pending.values()) p.reject(new Error(`${name} exited`));
      this.#pending.clear();
    });
  }

  /** Forks the child, hands it `config` and waits until it says it is ready. */
  static async start<C>(opts: ChildOptions, config: C): Promise<Child> {
    const script = opts.bundle ? await bundled(opts.script) : opts.script;
    const proc = fork(script, [], {
      execArgv: [...(opts.bundle ? NODE_FLAGS : []), ...(opts.nodeFlags ?? [])],
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      serialization: "json",
    });
    live.add(proc);
    const exited = new Promise<void>((resolve) => {
      proc.once("exit", () => {
        live.delete(proc);
        resolve();
      });
    });
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        proc.kill("SIGKILL");
        reject(new Error(`${opts.name} did not start within ${opts.startTimeoutMs ?? 60_000} ms`));
      }, opts.startTimeoutMs ?? 60_000);
      const onMessage = (m: FromChild) => {
        if (m.type === "ready") done(() => resolve(m.port));
        else if (m.type === "failed")
          done(() => reject(new Error(`${opts.name} failed to start: ${m.message}`)));
      };
      const onExit = (code: number | null) =>
        done(() => reject(new Error(`${opts.name} exited (code ${code}) before it was ready`)));
      const done = (f: () => void) => {
        clearTimeout(timer);
        proc.off("message", onMessage);
        proc.off("exit", onExit);
        f();
      };
      proc.on("message", onMessage);
      proc.once("exit", onExit);
      proc.send({ type: "start", config } satisfies ToChild<C>);
    });
    return new Child(opts.name, proc, port, exited);
  }

  #request<T>(message: (id: number) => ToChild): Promise<T> {
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (r: never) => void, reject });
      this.#proc.send(message(id));
    });
  }

  /** Runs one autocannon pass in the load driver child. */
  load(options: LoadOptions): Promise<LoadResult> {
    return this.#request((id) => ({ type: "load", id, options }));
  }

  /** CPU time (user + system) the child has used so far, µs. */
  cpuMicros(): Promise<number> {
    return this.#request((id) => ({ type: "cpu", id }));
  }

  /** The child's memory now and its event-loop delay since the previous call. */
  stats(): Promise<ProcessStats> {
    return this.#request((id) => ({ type: "stats", id }));
  }

  /** Starts a V8 CPU profile in the child. */
  profileStart(): Promise<void> {
    return this.#request((id) => ({ type: "profile-start", id }));
  }

  /** Stops the profile and has the child write it to `path` (`.cpuprofile`). */
  profileStop(path: string): Promise<void> {
    return this.#request((id) => ({ type: "profile-stop", id, path }));
  }

  /**
   * Asks the child to stop (it drains and exits by itself, writing a CPU profile if it was
   * started with `--cpu-prof`), and kills it if it has not exited within `timeoutMs`.
   */
  async stop(timeoutMs = 15_000): Promise<Record<string, unknown> | undefined> {
    if (!live.has(this.#proc)) return this.#stats;
    try {
      this.#proc.send({ type: "stop" } satisfies ToChild);
    } catch {
      // The channel is already closed; the kill below ends it.
    }
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const r = await Promise.race([this.#exited, timedOut]);
    clearTimeout(timer);
    if (r === "timeout") {
      this.#proc.kill("SIGKILL");
      await this.#exited;
    }
    return this.#stats;
  }
}
