/**
 * Bounded, useful audit events (issue 12, item 5), on a real Postgres through the whole stack:
 * routes are stored as the route table's pattern plus a hash of what was sent, anonymous denials
 * fold into one event per client hash and minute, and landing-page refusals of a leftover link
 * reach the dead-link report under the coordinator who issued it.
 */
import { randomBytes } from "node:crypto";
import { sha256Hex } from "@phaselock/core";
import { queryRows } from "@phaselock/db";
import { createTestDatabase } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, expect, it } from "vitest";
import { issue, landing, pb, seedOpen } from "./support/client.ts";
import { memoryFeed } from "./support/feeds.ts";
import { type GatewayApp, type Stack, startStack } from "./support/stack.ts";

describeIntegration("bounded audit events (Postgres)", ["postgres"], () => {
  let stack: Stack;
  let gw: GatewayApp;

  beforeAll(async () => {
    const db = await createTestDatabase();
    stack = await startStack({ db, feed: memoryFeed() });
    gw = stack.gateways[0]!.app;
  });

  afterAll(async () => {
    await stack?.close();
  });

  /** Everything queued, the gateways' anonymous aggregates included, is in Postgres. */
  const flushAll = async () => {
    for (const g of stack.gateways) await g.wiring.audit.flush();
    await stack.tokenService.deps.audit.flush();
  };
  const tableBytes = async () =>
    (
      await queryRows<{ n: string }>(
        stack.db.handle.db,
        // A partitioned table's own size is 0: its partitions hold the rows and indexes.
        sql`select coalesce(sum(pg_total_relation_size(inhrelid)), 0)::text as n from pg_inherits
            where inhparent = 'audit_events'::regclass`,
      )
    )[0]!.n;
  const events = (where: ReturnType<typeof sql>) =>
    queryRows<{
      type: string;
      decision: string | null;
      reason: string | null;
      link_id: string | null;
      data: Record<string, unknown>;
    }>(
      stack.db.handle.db,
      sql`select type, decision, reason, link_id, data from audit_events where ${where} order by seq`,
    );
  /** A random path of `n` characters under /pb/, so no compression flatters the table's growth. */
  const longPath = (n: number) =>
    `/${randomBytes(n)
      .toString("base64url")
      .slice(0, n - 1)}`;

  it("stores the route pattern and a hash of the path as sent, never the path", async () => {
    const s = await seedOpen(stack);
    const link = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
    const session = await stack.session(link.token);
    expect((await pb(gw, "/calls/next", { bearer: session })).status).toBe(200);
    const path = longPath(300);
    expect((await pb(gw, path, { bearer: session })).status).toBe(403);
    await flushAll();
    const rows = await events(sql`link_id = ${link.id} and type = 'access'`);
    expect(rows.map((r) => [r.data.route, r.data.pathHash])).toEqual([
      ["GET /calls/next", sha256Hex("/pb/calls/next")],
      ["unmapped", sha256Hex(`/pb${path}`)],
    ]);
    expect(JSON.stringify(rows)).not.toContain(path.slice(1, 40));
  });

  it("1,000 requests with 15,000-character paths grow the table by a bounded amount per event", async () => {
    const s = await seedOpen(stack);
    const link = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
    const session = await stack.session(link.token);
    await flushAll();
    const before = BigInt(await tableBytes());
    for (let i = 0; i < 1000; i++) {
      const res = await pb(gw, longPath(15_000), { bearer: session });
      expect(res.status).toBe(403);
    }
    await flushAll();
    const written = await events(sql`link_id = ${link.id} and type = 'access' and reason = 'scope_denied'`);
    expect(written).toHaveLength(1000);
    const perEvent = Number(BigInt(await tableBytes()) - before) / written.length;
    // A stored path alone would be 15 kB an event; a bounded event is a few hundred bytes (the
    // table's pages and indexes round it up).
    expect(perEvent).toBeLessThan(2048);
  });

  it("writes a client's first anonymous denial of a minute as itself, and folds the rest into one event, counting each", async () => {
    await flushAll();
    const [{ seq: start } = { seq: "0" }] = await queryRows<{ seq: string }>(
      stack.db.handle.db,
      sql`select coalesce(max(seq), 0)::text as seq from audit_events`,
    );
    const before = BigInt(await tableBytes());
    for (let i = 0; i < 600; i++) expect((await pb(gw, longPath(15_000))).status).toBe(401);
    for (let i = 0; i < 300; i++)
      expect((await pb(gw, "/calls/next", { bearer: "garbage" })).status).toBe(401);
    for (let i = 0; i < 100; i++) expect((await landing(gw, "not-a-token")).status).toBe(401);
    // The minute ends: its aggregate is recorded on the next denial or sweep; flush writes it now.
    await stack.advance(60_000);
    expect((await pb(gw, "/calls/next")).status).toBe(401);
    await flushAll();
    const rows = await events(sql`seq > ${start}::bigint`);
    const anonymous = rows.filter((r) => r.type === "access.anonymous_denied");
    // Each minute's first: an event of its own, with its reason (found at once by an admin).
    const own = rows.filter((r) => r.type === "access" && r.link_id === null);
    expect(own.map((r) => [r.decision, r.reason])).toEqual([
      ["deny", "token_missing"],
      ["deny", "token_missing"],
    ]);
    expect(anonymous).toHaveLength(1);
    expect(anonymous[0]!.data).toMatchObject({
      count: 999,
      reasons: { token_missing: 599, token_invalid: 400 },
      routes: { unmapped: 599, "GET /calls/next": 300, "GET /l/:token": 100 },
      minute: "2020-03-01T12:00:00.000Z",
    });
    expect(Number(BigInt(await tableBytes()) - before)).toBeLessThan(64 * 1024);
  });

  it("counts three landing refusals of a leftover link under its issuing coordinator", async () => {
    const s = await seedOpen(stack);
    const key = await stack.api<{ id: string; key: string }>("POST", "/v1/api-keys", {
      body: { role: "coordinator", campaignId: s.campaignId },
    });
    expect(key.status).toBe(201);
    const link = await issue(stack, { campaignId: s.campaignId, phase: s.phase }, key.body.key);
    const revoked = await stack.api("POST", "/v1/revocations", {
      body: { scope: "link", linkId: link.id, reason: "left over from a finished phone bank" },
    });
    expect(revoked.status).toBe(201);
    await stack.synced();
    for (let i = 0; i < 3; i++) expect((await landing(gw, link.token, "application/json")).status).toBe(410);
    await flushAll();
    const report = await stack.api<{ items: Record<string, unknown>[] }>(
      "GET",
      `/v1/reports/dead-links?campaignId=${s.campaignId}`,
    );
    expect(report.status).toBe(200);
    expect(report.body.items).toEqual([
      expect.objectContaining({
        campaignId: s.campaignId,
        issuedBy: key.body.id,
        reason: "revoked",
        attempts: 3,
        links: 1,
      }),
    ]);
  });
});
