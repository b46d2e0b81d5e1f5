import { writeFile } from "node:fs/promises";
import type { Server } from "node:http";
import { Session } from "node:inspector/promises";
import type { AddressInfo } from "node:net";
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { FromChild, LoadRequest, ToChild } from "./ipc.ts";

/** What a child script runs once it has its config. */
export interface ChildService {
  port: number;
  /** Drains and closes; what it returns is sent to the runner. */
  stop?: () => Promise<Record<string, unknown> | undefined>;
  /** Requests other than start/stop (the load driver's runs). */
  handle?: (msg: LoadRequest, reply: (m: FromChild) => void) => void;
}

const send = (m: FromChild): Promise<void> =>
  new Promise((resolve) => {
    if (!process.connected || !process.send) return resolve();
    process.send(m, undefined, {}, () => resolve());
  });

/**
 * The child side of the IPC protocol (see ipc.ts): waits for `start`, runs `start(config)`,
 * answers `ready`, serves until `stop`, then exits. Exits too when the runner goes away, so no
 * child is ever left behind.
 */
export function runChild<C>(start: (config: C) => Promise<ChildService>): void {
  if (!process.send) throw new Error("run this script through the bench runner (it needs an IPC channel)");
  let service: ChildService | undefined;
  let stopping = false;

  const stop = async () => {
    if (stopping) return;
    stopping = true;
    let stats: Record<string, unknown> | undefined;
    try {
      stats = await service?.stop?.();
    } catch (err) {
      stats = { stopError: err instanceof Error ? err.message : String(err) };
    }
    await send({ type: "stopped", stats });
    // process.exit (not a signal) so `--cpu-prof` writes its profile.
    process.exit(0);
  };

  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  process.on("message", (m: ToChild<C>) => {
    if (m.type === "start") {
      start(m.config).then(
        (s) => {
          service = s;
          void send({ type: "ready", port: s.port });
        },
        (err: unknown) => {
          void send({
            type: "failed",
            message: err instanceof Error ? (err.stack ?? err.message) : String(err),
          });
          setTimeout(() => process.exit(1), 100);
        },
      );
    } else if (m.type === "stop") {
      void stop();
    } else if (m.type === "load") {
      service?.handle?.(m, (r) => void send(r));
    } else if (m.type === "cpu") {
      const { user, system } = process.cpuUsage();
      void send({ type: "cpu", id: m.id, user, system });
    } else if (m.type === "stats") {
      const { rss, heapUsed } = process.memoryUsage();
      const ms = (ns: number) => ns / 1e6;
      const stats = {
        rss,
        heapUsed,
        loopP50: ms(loop.percentile(50)),
        loopP99: ms(loop.percentile(99)),
        loopMax: ms(loop.max),
      };
      loop.reset();
      void send({ type: "stats", id: m.id, ...stats });
    } else if (m.type === "profile-start" || m.type === "profile-stop") {
      const done = (ok: boolean, message?: string) => void send({ type: "profile", id: m.id, ok, message });
      (m.type === "profile-start" ? profiler.start() : profiler.stop(m.path)).then(
        () => done(true),
        (err: unknown) => done(false, err instanceof Error ? err.message : String(err)),
      );
    }
  });
  process.on("disconnect", () => process.exit(0));
}

/** A V8 CPU profile of this process between `start()` and `stop(path)`, through the inspector. */
const profiler = (() => {
  let session: Session | undefined;
  return {
    async start() {
      session = new Session();
      session.connect();
      await session.post("Profiler.enable");
      await session.post("Profiler.setSamplingInterval", { interval: 200 });
      await session.post("Profiler.start");
    },
    async stop(path: string) {
      if (!session) throw new Error("profiler not started");
      const { profile } = await session.post("Profiler.stop");
      session.disconnect();
      session = undefined;
      await writeFile(path, JSON.stringify(profile));
    },
  };
})();

/** Listens on an ephemeral loopback port. */
export function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port));
  });
}

/** Closes a server, dropping idle keep-alive connections so it does not wait for clients. */
export function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}
