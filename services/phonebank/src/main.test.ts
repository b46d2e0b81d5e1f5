import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { freePort } from "@phaselock/testkit";
import { describe, expect, it } from "vitest";

const MAIN = fileURLToPath(new URL("./main.ts", import.meta.url));
const TSX = import.meta.resolve("tsx");

async function start() {
  const port = await freePort();
  const proc = spawn(process.execPath, ["--import", TSX, MAIN], {
    env: { ...process.env, PHONEBANK_PORT: String(port), LOG_LEVEL: "info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr!.resume();
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on("data", () => {
      if (out.includes("listening")) resolve();
    });
    void exited.then((code) => reject(new Error(`phonebank exited (${code})`)));
  });
  return { proc, port, exited, output: () => out };
}

describe("pnpm start:phonebank (a real child process)", () => {
  it("logs a JSON line per request and exits 0 on SIGTERM", async () => {
    const { proc, port, exited, output } = await start();
    const res = await fetch(`http://127.0.0.1:${port}/healthz`, {
      headers: { "x-request-id": "req_pb_main_1" },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(await metrics.text()).toContain("phaselock_process_cpu_seconds_total");
    proc.kill("SIGTERM");
    expect(await exited).toBe(0);
    const line = output()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.path === "/healthz");
    expect(line).toMatchObject({
      service: "phonebank",
      msg: "request",
      status: 200,
      requestId: "req_pb_main_1",
    });
  }, 30_000);
});
