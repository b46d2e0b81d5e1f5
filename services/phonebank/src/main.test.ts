import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createTestDatabase, type TestDatabase } from "@phaselock/db/testing";
import { describeIntegration, freePort } from "@phaselock/testkit";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";

const MAIN = fileURLToPath(new URL("./main.ts", import.meta.url));
const TSX = import.meta.resolve("tsx");

/** Spawns `pnpm start:phonebank`'s main; `env` over the test's own, DATABASE_URL unset unless given. */
function spawnMain(env: Record<string, string>) {
  const proc = spawn(process.execPath, ["--import", TSX, MAIN], {
    env: { ...process.env, DATABASE_URL: "", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  proc.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => proc.once("exit", (code) => resolve(code)));
  return { proc, exited, output: () => out, errors: () => err };
}

async function start(env: Record<string, string> = {}) {
  const port = await freePort();
  const run = spawnMain({ PHONEBANK_PORT: String(port), ...env });
  await new Promise<void>((resolve, reject) => {
    run.proc.stdout!.on("data", () => {
      if (run.output().includes("listening")) resolve();
    });
    void run.exited.then((code) => reject(new Error(`phonebank exited (${code}): ${run.errors()}`)));
  });
  return { ...run, port };
}

describe("pnpm start:phonebank (a real child process)", () => {
  it("logs a JSON line per request and exits 0 on SIGTERM", async () => {
    const parent = mkdtempSync(join(tmpdir(), "phaselock-pb-"));
    const dataDir = join(parent, "data");
    const { proc, port, exited, output } = await start({ DATA_DIR: dataDir });
    // Without DATABASE_URL it opens no database: no embedded one, no DATA_DIR lock.
    expect(existsSync(dataDir)).toBe(false);
    rmSync(parent, { recursive: true, force: true });
    const res = await fetch(`http://127.0.0.1:${port}/healthz`, {
      headers: { "x-request-id": "req_pb_main_1" },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`);
    expect(await metrics.text()).toContain("phaselock_process_cpu_seconds_total");
    proc.kill("SIGTERM");
    expect(await exited).toBe(0);
    // Stdout is log lines only, every one JSON: the line saying it listens too.
    const stdout = output()
      .split("\n")
      .filter((l) => l !== "");
    for (const l of stdout) expect(() => JSON.parse(l), l).not.toThrow();
    expect(stdout.map((l) => (JSON.parse(l) as { msg: string }).msg)).toContain(
      `listening on http://127.0.0.1:${port} (synthetic members, no real people)`,
    );
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

  it("on a port already in use, says so in one line and exits 1, as the other services do", async () => {
    const holder = await start();
    try {
      const second = spawnMain({ PHONEBANK_PORT: String(holder.port) });
      expect(await second.exited).toBe(1);
      expect(second.errors()).toContain(
        `phonebank: port ${holder.port} on 127.0.0.1 is already in use: stop what holds it, or set PHONEBANK_PORT\n`,
      );
      expect(second.errors()).not.toMatch(/\n\s+at /);
    } finally {
      holder.proc.kill("SIGTERM");
      await holder.exited;
    }
  }, 30_000);
});

describeIntegration("pnpm start:phonebank with DATABASE_URL", ["postgres"], () => {
  let empty: TestDatabase;
  let migrated: TestDatabase;
  beforeAll(async () => {
    empty = await createTestDatabase({ migrate: false });
    migrated = await createTestDatabase({ poolSize: 1 });
  }, 60_000);
  afterAll(async () => {
    await empty?.drop();
    await migrated?.drop();
  });

  it("refuses to start on an unmigrated database, saying so, as the other services do", async () => {
    const run = spawnMain({ PHONEBANK_PORT: String(await freePort()), DATABASE_URL: empty.url });
    const outcome = await new Promise<number | null | "listening">((resolve) => {
      run.proc.stdout!.on("data", () => {
        if (run.output().includes("listening")) resolve("listening");
      });
      void run.exited.then(resolve);
    });
    run.proc.kill("SIGKILL");
    expect(outcome).toBe(1);
    expect(run.errors()).toContain(
      "phonebank: database is not migrated: run `pnpm db:migrate` (DATABASE_URL)",
    );
    expect(run.output()).not.toContain("listening");
  }, 30_000);

  it("starts on a migrated one, holding no connection to it once checked", async () => {
    const { proc, exited } = await start({ DATABASE_URL: migrated.url });
    const others = async () => {
      // postgres.js answers the rows as an array
      const rows = (await migrated.handle.db.execute(
        "select count(*)::int as n from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()",
      )) as unknown as { n: number }[];
      return rows[0]?.n;
    };
    await vi.waitFor(async () => expect(await others()).toBe(0), { timeout: 5000, interval: 50 });
    proc.kill("SIGTERM");
    expect(await exited).toBe(0);
  }, 30_000);
});
