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

const MAIN = fileURLToPath(new URL("./main.ts", import.meta.url));
const TSX = import.meta.resolve("tsx");
const ADMIN = `admin-${randomBytes(24).toString("hex")}`;

describeIntegration("SIGKILL of the token service during a 10,000-link batch", ["postgres"], () => {
  let db: TestDatabase;
  let child: ChildProcess | undefined;
  let base: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    child = spawn(process.execPath, ["--import", TSX, MAIN], {
      env: {
        ...process.env,
        DATABASE_URL: db.url,
        TOKEN_SERVICE_PORT: String(port),
        ADMIN_TOKEN: ADMIN,
        KEY_ENCRYPTION_KEY: randomBytes(32).toString("hex"),
        AUDIT_CHECKPOINT_DIR: join(mkdtempSync(join(tmpdir(), "phaselock-crash-")), "cp"),
        REDIS_URL: "",
      },
      stdio: ["ignore", "pipe", "inherit"],
    });
    await new Promise<void>((resolve, reject) => {
      child!.stdout!.on("data", (d: Buffer) => {
        if (d.toString().includes("listening")) resolve();
      });
      child!.once("exit", (code) => reject(new Error(`token service exited (${code})`)));
    });
  }, 120_000);
  afterAll(async () => {
    child?.kill("SIGKILL");
    await db?.drop();
  });

  const api = (method: string, path: string, body?: unknown) =>
    fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });

  it("leaves every stored link with its issuance event", async () => {
    const now = Date.now();
    const phases = [
      {
        name: "open",
        startsAt: new Date(now - 86_400_000).toISOString(),
        endsAt: new Date(now + 30 * 86_400_000).toISOString(),
        memberData: true,
      },
    ];
    expect((await api("PUT", "/v1/contests/crash", { name: "Crash", phases })).status).toBe(200);
    expect((await api("PUT", "/v1/campaigns/crash-c", { name: "C", contestId: "crash" })).status).toBe(200);
    expect(
      (await api("PUT", "/v1/campaigns/crash-c/entitlements/open", { scopes: ["calls:read"] })).status,
    ).toBe(200);
    const batch = (n: number, tag: string) =>
      api("POST", "/v1/links/batch", {
        campaignId: "crash-c",
        phase: "open",
        scopes: ["calls:read"],
        volunteers: Array.from({ length: n }, (_, i) => ({ ref: `${tag}-${i}` })),
      });
    expect((await batch(50, "first")).status).toBe(201);

    let settled = false;
    const big = batch(10_000, "big")
      .catch(() => null)
      .finally(() => {
        settled = true;
      });
    // Kill it while the batch's audit events are being written: with the events after the commit
    // (as they once were) that instant leaves links without events; in one transaction, neither.
    while (!settled) {
      const [row] = await queryRows<{ n: number }>(
        db.handle.db,
        sql`select count(*)::int as n from pg_stat_activity
          where datname = current_database() and state <> 'idle' and pid <> pg_backend_pid()
            and query ilike 'insert into audit_events%'`,
      );
      if ((row?.n ?? 0) > 0) break;
      await new Promise((r) => setImmediate(r));
    }
    child!.kill("SIGKILL");
    await big;

    const [counts] = await queryRows<{ links: number; orphans: number }>(
      db.handle.db,
      sql`select (select count(*)::int from links) as links,
        (select count(*)::int from links l where not exists (
          select 1 from audit_events e where e.type = 'link.issued' and e.link_id = l.id)) as orphans`,
    );
    expect(counts?.links).toBeGreaterThanOrEqual(50);
    expect(counts?.orphans).toBe(0);
  }, 120_000);
});
