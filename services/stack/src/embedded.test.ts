import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { getRequestListener } from "@hono/node-server";
import { appendEvents, verifyExport, verifyStored } from "@phaselock/audit";
import { runExportCli } from "@phaselock/audit/cli/export";
import { acquireDataDirLock, LOCK_FILE } from "@phaselock/core";
import { REPO_ROOT, spawnLockHolder } from "@phaselock/testkit/lock-holder";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseStackEnv } from "./env.ts";
import { type BuiltStack, buildStack } from "./stack.ts";

const MAIN = join(REPO_ROOT, "services/stack/src/main.ts");

/** Ports nobody listens on right now. */
async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, async () => {
      const s = createServer().listen(0, "127.0.0.1");
      await once(s, "listening");
      return s;
    }),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((ok) => s.close(ok))));
  return ports;
}

/** `pnpm start` as a real process, to its end. */
async function runStart(
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", MAIN], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => {
    stdout += String(d);
  });
  child.stderr.on("data", (d) => {
    stderr += String(d);
  });
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, stdout, stderr };
}

describe("pnpm start on the embedded database", () => {
  let root: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), "phaselock-start-"));
  });
  afterAll(() => {
    if (root) rmSync(root, { recursive: true, force: true });
  });

  /** `pnpm start` on a DATA_DIR of its own while a real process holds it as `holding`. */
  async function startWhileHeld(name: string, holding: Parameters<typeof spawnLockHolder>[1]) {
    const dataDir = join(root, name);
    const holder = await spawnLockHolder(dataDir, holding);
    try {
      const [a, b, c] = await freePorts(3);
      const run = await runStart({
        DATA_DIR: dataDir,
        TOKEN_SERVICE_PORT: String(a),
        GATEWAY_PORT: String(b),
        PHONEBANK_PORT: String(c),
      });
      return { ...run, holderPid: holder.pid, dataDir };
    } finally {
      await holder.stop();
    }
  }

  it("a second pnpm start is refused, naming the holder, before it opens the database or prints a link", async () => {
    const run = await startWhileHeld("held", {
      command: "pnpm start",
      ports: { tokenService: 4000, gateway: 8080 },
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`in use by pid ${run.holderPid}`);
    expect(run.stderr).toContain("(pnpm start)");
    expect(run.stderr).toContain("tokenService 4000, gateway 8080");
    expect(run.stdout).toBe("");
    expect(existsSync(join(run.dataDir, "PG_VERSION"))).toBe(false);
  });

  it("refused by a CLI holding the directory (a backup), it says to wait for it, not to stop Phaselock", async () => {
    const run = await startWhileHeld("backing-up", { command: "pnpm db:backup" });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`in use by pid ${run.holderPid}`);
    expect(run.stderr).toContain("pnpm db:backup is using it: wait for it to finish, then start again.");
    expect(run.stderr).not.toContain("Is Phaselock already running");
  });

  it("a port in use is a clear message and exit 1, not the banner and an EADDRINUSE stack", async () => {
    const dataDir = join(root, "port-taken");
    const taken: Server = createServer().listen(0, "127.0.0.1");
    await once(taken, "listening");
    try {
      const port = (taken.address() as AddressInfo).port;
      const [b, c] = await freePorts(2);
      const run = await runStart({
        DATA_DIR: dataDir,
        TOKEN_SERVICE_PORT: String(port),
        GATEWAY_PORT: String(b),
        PHONEBANK_PORT: String(c),
      });
      expect(run.code).toBe(1);
      expect(run.stderr).toContain(`port ${port} on 127.0.0.1 (tokenService) is already in use`);
      expect(run.stderr).toContain("TOKEN_SERVICE_PORT");
      expect(run.stderr).not.toMatch(/\n\s+at /);
      expect(run.stdout).not.toContain("Phaselock is running");
      // Refused before the database opened, and the lock went with the process.
      expect(existsSync(join(dataDir, "PG_VERSION"))).toBe(false);
      expect(existsSync(join(dataDir, LOCK_FILE))).toBe(false);
    } finally {
      await new Promise((ok) => taken.close(ok));
    }
  });
});

describe("audit:export while pnpm start holds the embedded database", () => {
  let dataDir: string;
  let stack: BuiltStack;
  let server: Server;
  let release: () => void;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "phaselock-export-"));
    // The test process plays `pnpm start`: it holds the lock and serves the token service.
    const lock = acquireDataDirLock(dataDir, { command: "pnpm start" });
    release = lock.release;
    stack = await buildStack(parseStackEnv({ DATA_DIR: dataDir }), {
      logger: { info: () => {}, warn: () => {}, error: () => {} },
    });
    server = createServer(getRequestListener(stack.tokenService.app.fetch)).listen(0, "127.0.0.1");
    await once(server, "listening");
    lock.setPorts({ tokenService: (server.address() as AddressInfo).port });
  }, 120_000);
  afterAll(async () => {
    if (server) await new Promise((ok) => server.close(ok));
    await stack?.stop();
    release?.();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("reads through the running token service with the dev admin token; the export verifies", async () => {
    const out = new PassThrough();
    const err = new PassThrough();
    let text = "";
    let errText = "";
    out.on("data", (d) => {
      text += String(d);
    });
    err.on("data", (d) => {
      errText += String(d);
    });
    expect(await runExportCli([], { DATA_DIR: dataDir }, { stdout: out, stderr: err })).toBe(0);
    expect(errText).toContain("reading through its token service");
    const lines = text.trimEnd().split("\n");
    const result = await verifyExport(lines);
    expect(result).toMatchObject({ ok: true, fromSeq: 1 });
    const stored = await verifyStored(stack.handle.db);
    expect(stored.ok).toBe(true);
    if (result.ok && stored.ok) {
      expect(result.events).toBeGreaterThan(0);
      // Its head is where the stored chain stood when the export began.
      expect(result.events).toBeLessThanOrEqual(stored.events);
    }
  });

  it("--since exports one contiguous stretch to the head, an event appended with an earlier `at` included", async () => {
    // An anonymous-denial aggregate is written when its minute ends, after events of later times.
    const at = (s: number) => new Date(Date.UTC(2099, 0, 1, 0, 0, s));
    const appended = await appendEvents(stack.handle.db, [
      { type: "link.issued", at: at(10), actor: "admin" },
      { type: "access.anonymous_denied", at: at(5), decision: "deny", reason: "token_invalid" },
      { type: "link.issued", at: at(20), actor: "admin" },
    ]);
    const out = new PassThrough();
    let text = "";
    out.on("data", (d) => {
      text += String(d);
    });
    const err = new PassThrough();
    let errText = "";
    err.on("data", (d) => {
      errText += String(d);
    });
    const code = await runExportCli(
      ["--since", at(8).toISOString()],
      { DATA_DIR: dataDir },
      { stdout: out, stderr: err },
    );
    expect(code, errText).toBe(0);
    expect(errText).toContain("reading through its token service");
    const lines = text.trimEnd().split("\n");
    expect(await verifyExport(lines)).toMatchObject({ ok: true, fromSeq: appended.firstSeq });
    const seqs = lines.slice(1, -1).map((l) => (JSON.parse(l) as { seq: number }).seq);
    expect(seqs.slice(0, 3)).toEqual([appended.firstSeq, appended.firstSeq + 1, appended.firstSeq + 2]);
    expect(lines.some((l) => l.includes(appended.ids[1]!))).toBe(true);
  });
});
