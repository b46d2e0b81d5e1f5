import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { listEvents } from "@phaselock/audit";
import { systemClock } from "@phaselock/core";
import { createTestDatabase, type TestDatabase } from "@phaselock/db/testing";
import { MemoryBus } from "@phaselock/state";
import { describeIntegration, freePort } from "@phaselock/testkit";
import { createTokenService, parseTokenServiceEnv } from "@phaselock/token-service";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";

// `pnpm start:gateway`: the gateway alone, so its upstream can be one that holds a request.
const MAIN = fileURLToPath(new URL("../../gateway/src/main.ts", import.meta.url));
const TSX = import.meta.resolve("tsx");
const ADMIN = `admin-${randomBytes(24).toString("hex")}`;
const DAY = 86_400_000;

/** Whether a TCP connection to the port is accepted now. */
const accepts = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });

/**
 * An upstream that holds every `/calls/next` until released: the in-flight request a SIGTERM must
 * let finish.
 */
function slowUpstream() {
  let arrived: () => void = () => {};
  const arrival = new Promise<void>((r) => {
    arrived = r;
  });
  let release: () => void = () => {};
  const released = new Promise<void>((r) => {
    release = r;
  });
  const server: Server = createHttpServer((req, res) => {
    arrived();
    void released.then(() => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ call: { id: "c_1", member: { id: "m_000001", name: "Alex", phone: "0" } } }));
    });
    req.resume();
  });
  return { server, arrival, release };
}

describeIntegration("gateway graceful shutdown (a real child process)", ["postgres"], () => {
  let db: TestDatabase;
  let token: string;
  let child: ChildProcess | undefined;
  let upstream: ReturnType<typeof slowUpstream> | undefined;

  beforeAll(async () => {
    db = await createTestDatabase();
    // A link issued by the token service over the same database.
    const service = createTokenService(
      parseTokenServiceEnv({
        ADMIN_TOKEN: ADMIN,
        KEY_ENCRYPTION_KEY: randomBytes(32).toString("hex"),
        AUDIT_CHECKPOINT_DIR: join(mkdtempSync(join(tmpdir(), "phaselock-shutdown-")), "cp"),
      }),
      {
        db: db.handle.db,
        stores: { bus: new MemoryBus({ heartbeatMs: 0 }) },
        clock: systemClock,
        checkpointTimers: { setInterval: () => 0, clearInterval: () => {} },
        logger: { info: () => {}, warn: () => {}, error: () => {} },
      },
    );
    await service.start();
    const api = async (method: string, path: string, body: unknown) => {
      const res = await service.app.request(path, {
        method,
        headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
      return (await res.json()) as Record<string, unknown>;
    };
    const now = Date.now();
    await api("PUT", "/v1/contests/sd", {
      name: "Shutdown",
      phases: [
        {
          name: "open",
          startsAt: new Date(now - DAY).toISOString(),
          endsAt: new Date(now + DAY).toISOString(),
          memberData: true,
        },
      ],
    });
    await api("PUT", "/v1/campaigns/sd-c", { name: "C", contestId: "sd" });
    await api("PUT", "/v1/campaigns/sd-c/entitlements/open", { scopes: ["calls:read"] });
    const link = await api("POST", "/v1/links", {
      campaignId: "sd-c",
      phase: "open",
      volunteer: { ref: "sd-volunteer" },
      scopes: ["calls:read"],
      maxUses: 10,
    });
    token = String(link.token);
    await service.stop();
  }, 60_000);

  afterEach(async () => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    child = undefined;
    upstream?.release();
    await new Promise((r) => (upstream ? upstream.server.close(r) : r(undefined)));
    upstream = undefined;
  });
  afterAll(async () => {
    await db?.drop();
  });

  /** Starts `pnpm start:gateway` (main.ts) against the slow upstream; resolves once it listens. */
  async function start() {
    upstream = slowUpstream();
    await new Promise<void>((r) => upstream!.server.listen(0, "127.0.0.1", r));
    const upstreamPort = (upstream.server.address() as { port: number }).port;
    const port = await freePort();
    const proc = spawn(process.execPath, ["--import", TSX, MAIN], {
      env: {
        ...process.env,
        DATABASE_URL: db.url,
        GATEWAY_PORT: String(port),
        UPSTREAM_URL: `http://127.0.0.1:${upstreamPort}`,
        REDIS_URL: "",
        LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = proc;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      proc.once("exit", (code, signal) => resolve({ code, signal })),
    );
    let stderr = "";
    proc.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    await new Promise<void>((resolve, reject) => {
      proc.stdout!.on("data", (d: Buffer) => {
        if (d.toString().includes("listening")) resolve();
      });
      void exited.then((e) => reject(new Error(`gateway exited (${e.code ?? e.signal})`)));
    });
    const base = `http://127.0.0.1:${port}`;
    const redeemed = await fetch(`${base}/l/${token}`, {
      method: "POST",
      headers: { accept: "application/json" },
    });
    expect(redeemed.status).toBe(201);
    const { session } = (await redeemed.json()) as { session: string };
    return { proc, port, base, session, exited, stderr: () => stderr };
  }

  it("started on a shared Postgres without REDIS_URL, it warns that its limits are its own", async () => {
    const { proc, exited, stderr } = await start();
    expect(stderr()).toContain(
      "gateway: no REDIS_URL, so rate limits and record quotas are this process's own",
    );
    proc.kill("SIGTERM");
    expect((await exited).code).toBe(0);
  }, 60_000);

  it("SIGTERM: the in-flight request completes, its audit event is stored, new connections are refused, exit 0", async () => {
    const { proc, port, base, session, exited } = await start();
    const requestId = `req_shutdown_${randomBytes(6).toString("hex")}`;
    const inFlight = fetch(`${base}/pb/calls/next`, {
      headers: { authorization: `Bearer ${session}`, "x-request-id": requestId },
    });
    await upstream!.arrival;
    // Denials without a valid credential (not awaited by their answers): the first is queued as
    // itself, the second held in memory as this minute's anonymous aggregate; SIGTERM writes both.
    for (let i = 0; i < 2; i++) {
      const denied = await fetch(`${base}/pb/calls/next`, { headers: { authorization: `Bearer ${token}` } });
      expect(denied.status).toBe(401);
    }
    proc.kill("SIGTERM");
    await expect.poll(() => accepts(port), { timeout: 5000 }).toBe(false);
    upstream!.release();
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { call: { id: string } }).call.id).toBe("c_1");
    expect(await exited).toEqual({ code: 0, signal: null });
    // Written before the answer left (an allowed answer waits for its event) and kept through exit.
    const { items } = await listEvents(db.handle.db, { decision: "allow", limit: 500 });
    expect(items.filter((e) => e.type === "access" && e.data.route === "GET /calls/next")).toHaveLength(1);
    const deny = await listEvents(db.handle.db, { decision: "deny", limit: 500 });
    const first = deny.items.filter((e) => e.type === "access" && e.linkId === null);
    expect(first.map((e) => e.reason)).toEqual(["session_required"]);
    const anonymous = deny.items.filter((e) => e.type === "access.anonymous_denied");
    expect(anonymous).toHaveLength(1);
    expect(anonymous[0]!.data).toMatchObject({ count: 1, reasons: { session_required: 1 } });
  }, 60_000);

  it("a second signal exits at once, non-zero, without waiting for the drain", async () => {
    const { proc, base, session, exited } = await start();
    const inFlight = fetch(`${base}/pb/calls/next`, {
      headers: { authorization: `Bearer ${session}` },
    }).catch(() => null);
    await upstream!.arrival;
    proc.kill("SIGTERM");
    proc.kill("SIGINT");
    // Had it waited, the held request would have been cut after 10 s and the exit been 0.
    expect(await exited).toEqual({ code: 130, signal: null });
    await inFlight;
  }, 60_000);
});
