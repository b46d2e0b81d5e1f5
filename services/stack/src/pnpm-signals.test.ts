import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { childOutput, freePort } from "@phaselock/testkit";
import { afterEach, describe, expect, it } from "vitest";

// SIGTERM sent to `pnpm start` itself, as a user's supervisor or `kill` sends it, not to the node
// process the other shutdown tests spawn directly. pnpm passes the signal to its script's process
// group and, once its own child has gone, SIGKILLs whatever is left of that group; a script run as
// `sh -c "tsx …"` lost its shell to the signal at once, so pnpm exited 143 and killed the service
// in the middle of its drain (and tsx SIGKILLs a child that has not acknowledged the signal within
// 60 ms). The scripts `exec` node with the tsx loader, so the service is pnpm's child itself.

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const PNPM = process.env.npm_execpath?.match(/pnpm[^/]*$/) ? process.env.npm_execpath : "pnpm";

const running: ChildProcess[] = [];
afterEach(() => {
  for (const child of running.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
});

function pnpm(script: string, env: Record<string, string>) {
  const child = spawn(PNPM, [script], {
    cwd: REPO,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? tmpdir(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.push(child);
  return { child, output: childOutput(child) };
}

async function healthy(run: ReturnType<typeof pnpm>, port: number): Promise<void> {
  for (;;) {
    if (run.child.exitCode !== null) throw new Error(`exited ${run.child.exitCode}: ${run.output()}`);
    const res = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null);
    if (res?.status === 200) return;
    await new Promise((r) => setTimeout(r, 100)); // polling a child process, not waiting for time
  }
}

/** A request whose body arrives slowly: in flight when the signal comes. Resolves to its status line. */
function slowRequest(port: number, path: string, bearer: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ name: "Slow", phases: [] });
    const socket = connect(port, "127.0.0.1", () => {
      socket.write(
        `PUT ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${bearer}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
      );
      socket.write(body.slice(0, 5));
      setTimeout(() => socket.write(body.slice(5)), 1500);
    });
    let answer = "";
    socket.on("data", (d) => {
      answer += String(d);
    });
    socket.on("close", () => resolve(answer.split("\r\n")[0] ?? ""));
    socket.on("error", reject);
  });
}

describe("SIGTERM to the pnpm command itself", () => {
  it("pnpm start:phonebank drains and exits 0", async () => {
    const port = await freePort();
    const run = pnpm("start:phonebank", { PHONEBANK_PORT: String(port) });
    await healthy(run, port);
    run.child.kill("SIGTERM");
    const [code, signal] = await once(run.child, "exit");
    expect({ code, signal }, run.output()).toEqual({ code: 0, signal: null });
    expect(run.output()).toContain("phonebank: stopped");
  }, 60_000);

  it("pnpm start: the in-flight request is answered, the DATA_DIR lock released, exit 0", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "pl-pnpm-signal-"));
    const [tokenService, gateway, phonebank] = [await freePort(), await freePort(), await freePort()];
    const run = pnpm("start", {
      DATA_DIR: dataDir,
      TOKEN_SERVICE_PORT: String(tokenService),
      GATEWAY_PORT: String(gateway),
      PHONEBANK_PORT: String(phonebank),
      UPSTREAM_URL: `http://127.0.0.1:${phonebank}`,
      PUBLIC_GATEWAY_URL: `http://127.0.0.1:${gateway}`,
    });
    while (!run.output().includes("Phaselock is running")) {
      if (run.child.exitCode !== null) throw new Error(`exited ${run.child.exitCode}: ${run.output()}`);
      await new Promise((r) => setTimeout(r, 100)); // polling a child process, not waiting for time
    }
    const { adminToken } = JSON.parse(readFileSync(join(dataDir, "dev-secrets.json"), "utf8"));
    const inFlight = slowRequest(tokenService, "/v1/contests/slow-1", adminToken);
    await new Promise((r) => setTimeout(r, 300)); // the request's headers are in
    run.child.kill("SIGTERM");
    const [code, signal] = await once(run.child, "exit");
    expect({ code, signal }, run.output()).toEqual({ code: 0, signal: null });
    expect(await inFlight).toMatch(/^HTTP\/1\.1 \d{3}/);
    expect(run.output()).toContain("phaselock: stopped");
    expect(existsSync(join(dataDir, "phaselock.lock"))).toBe(false);
    rmSync(dataDir, { recursive: true, force: true });
  }, 90_000);
});
