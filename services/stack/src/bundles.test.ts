import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createTestDatabase, type TestDatabase } from "@phaselock/db/testing";
import { childOutput, describeIntegration, freePort, TEST_REDIS_URL } from "@phaselock/testkit";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { bundle, bundlePath, NODE_FLAGS, SERVICES, type ServiceName } from "../../../scripts/build.ts";

// `pnpm build`: what the image runs (infra/image/entrypoint.sh). Each bundle must find the
// committed migrations, load PGlite from beside it and serve, with nothing from src/ at run time.

const REPO = fileURLToPath(new URL("../../../", import.meta.url));

interface Run {
  child: ChildProcess;
  output: () => string;
}

const running: ChildProcess[] = [];

function start(name: ServiceName, env: Record<string, string>): Run {
  const child = spawn(process.execPath, [...NODE_FLAGS, bundlePath(name)], {
    cwd: tmpdir(), // nothing resolves from the working directory
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.push(child);
  return { child, output: childOutput(child) };
}

/** Polls `GET /healthz` until 200, or fails with the child's output when it exits first. */
async function healthy(run: Run, port: number): Promise<void> {
  for (;;) {
    if (run.child.exitCode !== null) throw new Error(`exited ${run.child.exitCode}: ${run.output()}`);
    const res = await fetch(`http://127.0.0.1:${port}/healthz`).catch(() => null);
    if (res?.status === 200) return;
    await new Promise((r) => setTimeout(r, 50)); // polling a child process, not waiting for time
  }
}

async function stop(run: Run): Promise<number | null> {
  run.child.kill("SIGTERM");
  const [code] = (await once(run.child, "exit")) as [number | null];
  return code;
}

describeIntegration("pnpm build: the services as one bundle each", ["postgres", "redis"], () => {
  let empty: TestDatabase;

  beforeAll(async () => {
    await Promise.all(
      (Object.keys(SERVICES) as ServiceName[]).map((n) => bundle(SERVICES[n], bundlePath(n))),
    );
    empty = await createTestDatabase({ migrate: false });
  }, 120_000);
  afterEach(() => {
    for (const c of running.splice(0)) if (c.exitCode === null) c.kill("SIGKILL");
  });
  afterAll(async () => {
    await empty?.drop();
  });

  it("the migrate bundle applies the committed migrations, then the gateway and token service serve on them", async () => {
    const migrate = start("migrate", { DATABASE_URL: empty.url });
    const [code] = (await once(migrate.child, "exit")) as [number | null];
    expect(code, migrate.output()).toBe(0);
    const journal = JSON.parse(readFileSync(join(REPO, "packages/db/drizzle/meta/_journal.json"), "utf8"));
    expect(migrate.output()).toContain(`applied ${journal.entries.length} migration(s)`);

    const [tsPort, gwPort] = [await freePort(), await freePort()];
    const prefix = `pl-bundles-${randomBytes(6).toString("hex")}`;
    const common = { DATABASE_URL: empty.url, REDIS_URL: TEST_REDIS_URL, REDIS_PREFIX: prefix };
    const ts = start("token-service", {
      ...common,
      TOKEN_SERVICE_PORT: String(tsPort),
      ADMIN_TOKEN: `admin-${randomBytes(24).toString("hex")}`,
      KEY_ENCRYPTION_KEY: randomBytes(32).toString("hex"),
      AUDIT_CHECKPOINT_DIR: join(mkdtempSync(join(tmpdir(), "phaselock-bundles-")), "cp"),
    });
    await healthy(ts, tsPort);
    const gw = start("gateway", {
      ...common,
      GATEWAY_PORT: String(gwPort),
      UPSTREAM_URL: "http://127.0.0.1:9",
      TOKEN_SERVICE_URL: `http://127.0.0.1:${tsPort}`,
    });
    await healthy(gw, gwPort);
    // The bundle is the whole gateway: a request without a credential is refused as the contract says.
    const refused = await fetch(`http://127.0.0.1:${gwPort}/pb/calls/next`);
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe("token_missing");
    expect(await stop(gw)).toBe(0);
    expect(await stop(ts)).toBe(0);
  });

  it("the migrate and token service bundles run on the embedded database (PGlite from node_modules)", async () => {
    const dataDir = mkdtempSync(join(tmpdir(), "phaselock-bundle-data-"));
    const migrate = start("migrate", { DATA_DIR: dataDir });
    const [code] = (await once(migrate.child, "exit")) as [number | null];
    expect(code, migrate.output()).toBe(0);
    const port = await freePort();
    const ts = start("token-service", { DATA_DIR: dataDir, TOKEN_SERVICE_PORT: String(port) });
    await healthy(ts, port);
    expect(await stop(ts)).toBe(0);
  });
});

it("a bundle outside the repository is refused (its migrations are found relative to it)", async () => {
  await expect(bundle(SERVICES.gateway, join(tmpdir(), "gateway.mjs"))).rejects.toThrow(
    /outside the repository/,
  );
});

it("the image runs each bundle with the same Node flags as the bench (NODE_FLAGS)", () => {
  const entrypoint = readFileSync(join(REPO, "infra/image/entrypoint.sh"), "utf8");
  expect(entrypoint).toContain(`exec node ${NODE_FLAGS.join(" ")} "/app/$entry"`);
  expect(entrypoint).toContain('entry="services/$service/dist/main.mjs"');
  expect(entrypoint).toContain('entry="packages/db/dist/migrate.mjs"');
});
