import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listEvents } from "@phaselock/audit";
import { createDb } from "@phaselock/db";
import { createTestDatabase, type TestDatabase } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { parseStackEnv } from "./env.ts";
import { type BuiltStack, buildStack } from "./stack.ts";

const tokenOf = (url: string): string => new URL(url).pathname.split("/").at(-1)!;
const redeem = (stack: BuiltStack, token: string, device: string) =>
  stack.gateway.app.request(`/l/${token}`, { method: "POST", headers: { cookie: device } });
/** A device as a browser gets one: the `pl_device` cookie the gateway's landing page sets. */
async function issuedDevice(stack: BuiltStack, token: string): Promise<string> {
  const res = await stack.gateway.app.request(`/l/${token}`);
  const cookie = res.headers.getSetCookie().find((c) => c.startsWith("pl_device="));
  if (!cookie) throw new Error(`the landing page answered ${res.status} without a device cookie`);
  return cookie.slice(0, cookie.indexOf(";"));
}

describeIntegration("pnpm start's stack, built by the function main.ts calls", ["postgres"], () => {
  let db: TestDatabase;
  let dataDir: string;
  let stack: BuiltStack;
  let config: ReturnType<typeof parseStackEnv>;
  let env: Record<string, string>;
  /** the one device the ballot link is opened on, whichever test opens it first */
  let ballotDevice: string;

  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false });
    dataDir = mkdtempSync(join(tmpdir(), "phaselock-stack-"));
    env = {
      DATABASE_URL: db.url,
      DATA_DIR: dataDir,
      MAX_DEVICES_PER_LINK: "1",
      SECURE_COOKIES: "true",
    };
    config = parseStackEnv(env);
    // The stack opens its own pool to the test database: ours is not needed.
    await db.handle.close();
    stack = await buildStack(config, { logger: { info: () => {}, warn: () => {}, error: () => {} } });
    ballotDevice = await issuedDevice(stack, tokenOf(stack.demo!.ballot.url));
  });

  afterAll(async () => {
    await stack?.stop();
    await db?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("seeds the demo and marks the session cookie Secure when SECURE_COOKIES=true", async () => {
    expect(stack.seededNow).toBe(true);
    const res = await redeem(stack, tokenOf(stack.demo!.ballot.url), ballotDevice);
    expect(res.status).toBe(303);
    const session = res.headers.getSetCookie().find((c) => c.startsWith("pl_session="));
    expect(session).toMatch(/;\s*Secure/i);
  });

  it("suspends a link redeemed from more devices than MAX_DEVICES_PER_LINK=1", async () => {
    const token = tokenOf(stack.demo!.ballot.url);
    expect((await redeem(stack, token, ballotDevice)).status).toBe(303);
    const second = await redeem(stack, token, await issuedDevice(stack, token));
    expect(second.status).toBe(403);
    expect(await second.text()).toContain("suspended");
  });

  it("on a later start, says what the sample ballot link is now (here: suspended), not that it works", async () => {
    const first = stack.demo!.ballot;
    expect(first.expect).toBe("works: press Start calling");
    await stack.stop();
    stack = await buildStack(config, { logger: { info: () => {}, warn: () => {}, error: () => {} } });
    expect(stack.seededNow).toBe(false);
    expect(stack.demo!.ballot).toEqual({
      url: first.url,
      expect: "no longer works: suspended (issue a new one, or start on an empty DATA_DIR)",
    });
  });

  it("on a later start with another PUBLIC_GATEWAY_URL, prints the sample links on that gateway", async () => {
    const code = tokenOf(stack.demo!.ballot.url);
    const leftover = tokenOf(stack.demo!.leftover.url);
    await stack.stop();
    config = parseStackEnv({ ...env, PUBLIC_GATEWAY_URL: "http://127.0.0.1:18081" });
    stack = await buildStack(config, { logger: { info: () => {}, warn: () => {}, error: () => {} } });
    expect(stack.demo!.ballot.url).toBe(`http://127.0.0.1:18081/l/${code}`);
    expect(stack.demo!.leftover.url).toBe(`http://127.0.0.1:18081/l/${leftover}`);
  });

  it("probes the database and the store on the gateway's /readyz", async () => {
    expect((await stack.gateway.app.request("/readyz")).status).toBe(200);
    const ping = vi.spyOn(stack.stores, "ping").mockRejectedValueOnce(new Error("store down"));
    expect((await stack.gateway.app.request("/readyz")).status).toBe(503);
    expect(ping).toHaveBeenCalled();
    ping.mockRestore();
    const execute = vi.spyOn(stack.handle.db, "execute").mockRejectedValueOnce(new Error("database down"));
    expect((await stack.gateway.app.request("/readyz")).status).toBe(503);
    expect(execute).toHaveBeenCalled();
    execute.mockRestore();
    expect((await stack.gateway.app.request("/readyz")).status).toBe(200);
  });
});

describeIntegration(
  "pnpm start's stack on SIGTERM (stack.stop, what main.ts's shutdown calls)",
  ["postgres"],
  () => {
    let db: TestDatabase;
    let dataDir: string;

    beforeAll(async () => {
      db = await createTestDatabase({ migrate: false });
      dataDir = mkdtempSync(join(tmpdir(), "phaselock-stack-stop-"));
    });
    afterAll(async () => {
      await db?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it("writes the gateway's held anonymous aggregate and the shared writer's queue before closing", async () => {
      const config = parseStackEnv({ DATABASE_URL: db.url, DATA_DIR: dataDir });
      const stack = await buildStack(config, { logger: { info: () => {}, warn: () => {}, error: () => {} } });
      // No credential, twice: the first queued as itself, the second held in memory as this
      // minute's anonymous aggregate, not yet an event.
      expect((await stack.gateway.app.request("/pb/calls/next")).status).toBe(401);
      expect((await stack.gateway.app.request("/pb/calls/next")).status).toBe(401);
      // A refused link on the landing page: a batched denial, in the writer's queue.
      expect((await stack.gateway.app.request("/l/not.a.token")).status).toBeGreaterThanOrEqual(400);
      await stack.stop();
      const reader = createDb({ databaseUrl: db.url, poolSize: 1 });
      try {
        const types = (await listEvents(reader.db, { limit: 500 })).items.map((e) => e.type);
        expect(types).toContain("access.anonymous_denied");
      } finally {
        await reader.close();
      }
    });
  },
);
