/**
 * SIGKILL of a gateway under load (issue 12, item 4): the token service, the phone bank and the
 * gateway run as their own processes (their main.ts) on one real Postgres; clients hammer
 * `/pb/calls/next` with their own X-Request-Id, and the gateway is killed mid-load. Every 200 a
 * client received must have its `access`/`allow` event in Postgres: an answer carrying member
 * data leaves only once its event has committed (group commit), so a kill can lose none.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { queryRows } from "@phaselock/db";
import { createTestDatabase, type TestDatabase } from "@phaselock/db/testing";
import { describeIntegration, freePort } from "@phaselock/testkit";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, expect, it } from "vitest";

const TSX = import.meta.resolve("tsx");
const main = (service: string) => fileURLToPath(new URL(`../../${service}/src/main.ts`, import.meta.url));
const ADMIN = `admin-${randomBytes(24).toString("hex")}`;
const SECRET = randomBytes(24).toString("hex");

/** What each service wrote to stdout. */
const stdout = new Map<string, string>();

/** Starts a service's main.ts and resolves once it says it is listening. */
function start(service: string, env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["--import", TSX, main(service)], {
    env: { ...process.env, NODE_ENV: "test", REDIS_URL: "", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  stdout.set(service, "");
  return new Promise((resolve, reject) => {
    child.stdout!.on("data", (d: Buffer) => {
      stdout.set(service, stdout.get(service) + d.toString());
      if (d.toString().includes("listening")) resolve(child);
    });
    child.once("exit", (code) => reject(new Error(`${service} exited (${code}) before listening`)));
  });
}

const exited = (c: ChildProcess) =>
  c.exitCode !== null || c.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((resolve) => c.once("exit", () => resolve()));

describeIntegration("SIGKILL of a gateway under load", ["postgres"], () => {
  let db: TestDatabase;
  const children: ChildProcess[] = [];
  let gateway: ChildProcess;
  let tokens: string;
  let gw: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    const [tsPort, pbPort, gwPort] = [await freePort(), await freePort(), await freePort()];
    tokens = `http://127.0.0.1:${tsPort}`;
    gw = `http://127.0.0.1:${gwPort}`;
    children.push(
      await start("token-service", {
        DATABASE_URL: db.url,
        TOKEN_SERVICE_PORT: String(tsPort),
        TOKEN_SERVICE_URL: tokens,
        PUBLIC_GATEWAY_URL: gw,
        ADMIN_TOKEN: ADMIN,
        KEY_ENCRYPTION_KEY: randomBytes(32).toString("hex"),
        AUDIT_CHECKPOINT_DIR: join(mkdtempSync(join(tmpdir(), "phaselock-gw-crash-")), "cp"),
      }),
    );
    children.push(await start("phonebank", { PHONEBANK_PORT: String(pbPort), PHONEBANK_SECRET: SECRET }));
    gateway = await start("gateway", {
      DATABASE_URL: db.url,
      GATEWAY_PORT: String(gwPort),
      UPSTREAM_URL: `http://127.0.0.1:${pbPort}`,
      TOKEN_SERVICE_URL: tokens,
      PUBLIC_GATEWAY_URL: gw,
      PHONEBANK_SECRET: SECRET,
      AUDIT_IP_KEY: randomBytes(16).toString("hex"),
    });
    children.push(gateway);
  }, 120_000);

  afterAll(async () => {
    for (const c of children) c.kill("SIGKILL");
    await Promise.all(children.map(exited));
    await db?.drop();
  });

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${tokens}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  it("every 200 the clients received has its event in Postgres", async () => {
    const now = Date.now();
    const phase = {
      name: "open",
      startsAt: new Date(now - 86_400_000).toISOString(),
      endsAt: new Date(now + 30 * 86_400_000).toISOString(),
      memberData: true,
    };
    expect((await api("PUT", "/v1/contests/kill", { name: "Kill", phases: [phase] })).status).toBe(200);
    const limits = { requestsPerMinute: 1_000_000, recordsPerHour: 1_000_000 };
    expect((await api("PUT", "/v1/campaigns/kill-c", { name: "K", contestId: "kill", limits })).status).toBe(
      200,
    );
    expect(
      (await api("PUT", "/v1/campaigns/kill-c/entitlements/open", { scopes: ["calls:read"] })).status,
    ).toBe(200);

    // A few links, each with a session (a link allows 8 requests in flight on one gateway).
    const sessions: string[] = [];
    for (let i = 0; i < 4; i++) {
      const link = await api("POST", "/v1/links", {
        campaignId: "kill-c",
        phase: "open",
        scopes: ["calls:read"],
        volunteer: { ref: `vol-${i}` },
      });
      expect(link.status).toBe(201);
      const token = new URL(String(link.body.url)).pathname.replace(/^\/l\//, "");
      let opened: Response | undefined;
      // The gateway hears of the new campaign within its poll: retry the redemption briefly.
      for (let t = 0; t < 100; t++) {
        opened = await fetch(`${gw}/l/${token}`, { method: "POST", headers: { accept: "application/json" } });
        if (opened.status === 201) break;
        await opened.arrayBuffer();
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(opened?.status).toBe(201);
      sessions.push(String(((await opened!.json()) as { session: string }).session));
    }

    const received: string[] = [];
    let sent = 0;
    let stop = false;
    const worker = async (session: string, w: number) => {
      for (let n = 0; !stop; n++) {
        const id = `kill-${w}-${n}`;
        sent++;
        try {
          const res = await fetch(`${gw}/pb/calls/next`, {
            headers: { authorization: `Bearer ${session}`, "x-request-id": id, accept: "application/json" },
          });
          const body = await res.text();
          if (res.status === 200) {
            expect(res.headers.get("x-request-id")).toBe(id);
            expect(body).toContain("member");
            received.push(id);
          }
        } catch {
          // The gateway is gone: the connection was cut before an answer.
          if (gateway.signalCode !== null) return;
        }
      }
    };
    const workers = sessions.flatMap((s, i) => Array.from({ length: 6 }, (_, k) => worker(s, i * 6 + k)));
    // Kill it once answers are flowing, with requests in flight.
    while (received.length < 300) await new Promise((r) => setTimeout(r, 5));
    gateway.kill("SIGKILL");
    await exited(gateway);
    stop = true;
    await Promise.all(workers);

    expect(received.length).toBeGreaterThanOrEqual(300);
    const rows = await queryRows<{ id: string }>(
      db.handle.db,
      sql`select data->>'requestId' as id from audit_events
        where type = 'access' and decision = 'allow' and data->>'requestId' like 'kill-%'`,
    );
    const stored = new Set(rows.map((r) => r.id));
    const missing = received.filter((id) => !stored.has(id));
    expect({ sent: sent > received.length, missing }).toEqual({ sent: true, missing: [] });
  }, 120_000);

  it("each service's stdout is JSON lines only, the line saying it listens included", () => {
    for (const service of ["token-service", "phonebank", "gateway"]) {
      const lines = stdout
        .get(service)!
        .split("\n")
        .filter((l) => l !== "");
      for (const l of lines) expect(() => JSON.parse(l), `${service}: ${l}`).not.toThrow();
      expect(
        lines.some((l) => (JSON.parse(l) as { msg: string }).msg.startsWith("listening on http://")),
      ).toBe(true);
    }
  });
});
