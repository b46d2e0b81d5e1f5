/**
 * Fail closed: a gateway that cannot confirm its policy state is current, or cannot reach its
 * stores, refuses (503 `unavailable`) rather than serve on what may be stale or unrecorded.
 * Redis (the change feed) and, in the second suite, the gateway's Postgres are reached through a
 * TCP proxy this file runs, so cutting the proxy is a real outage for the services behind it,
 * while the shared servers stay up for other test files. Staleness is measured on the shared
 * FakeClock, advanced once the bus has reported the cut.
 */

import { createTestDatabase } from "@phaselock/db/testing";
import {
  describeIntegration,
  TcpProxy,
  TEST_DATABASE_URL,
  TEST_REDIS_URL,
  targetOf,
  uniquePrefix,
  viaProxy,
} from "@phaselock/testkit";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import {
  errorCode,
  type IssuedLink,
  issue,
  landing,
  nextCall,
  pb,
  redeem,
  seedOpen,
} from "./support/client.ts";
import { memoryFeed, redisFeed } from "./support/feeds.ts";
import { type GatewayNode, type Stack, startStack } from "./support/stack.ts";

const STALE_AFTER_MS = 300;

describeIntegration("a gateway whose change feed is cut (Postgres + Redis)", ["postgres", "redis"], () => {
  let proxy: TcpProxy;
  let stack: Stack;
  let gateway: GatewayNode;
  let seed: Awaited<ReturnType<typeof seedOpen>>;
  let revokedDuringOutage: IssuedLink;
  let control: IssuedLink;
  let unredeemed: IssuedLink;

  const readyz = async () => {
    const res = await gateway.app.request("/readyz");
    return { status: res.status, body: (await res.json()) as { ok: boolean; fresh: boolean } };
  };

  beforeAll(async () => {
    proxy = await TcpProxy.start(targetOf(TEST_REDIS_URL));
    stack = await startStack({
      db: await createTestDatabase(),
      // Token service and gateway both reach Redis only through the proxy.
      feed: redisFeed({
        url: viaProxy(TEST_REDIS_URL, proxy),
        prefix: uniquePrefix("e2e-fail-closed"),
        heartbeatMs: 50,
      }),
      staleAfterMs: STALE_AFTER_MS,
    });
    gateway = stack.gateways[0]!;
    seed = await seedOpen(stack);
    revokedDuringOutage = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
    control = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
    unredeemed = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
    await stack.synced();
    await vi.waitFor(() => expect(gateway.feed).toContain("heartbeat"), { timeout: 5000, interval: 20 });
  });

  afterAll(async () => {
    await stack?.close();
    await proxy?.close();
  });

  it("serves while the feed is confirmed", async () => {
    expect(await readyz()).toMatchObject({ status: 200, body: { ok: true, fresh: true } });
    expect(await nextCall(gateway.app, await stack.session(control.token))).toEqual({
      status: 200,
      code: null,
    });
    expect(await nextCall(gateway.app, await stack.session(revokedDuringOutage.token))).toEqual({
      status: 200,
      code: null,
    });
  });

  it("refuses with 503 unavailable once the feed is cut and the state goes stale", async () => {
    const seen = gateway.feed.length;
    proxy.cut();
    // The bus notices the cut; from then on no heartbeat can confirm the state.
    await vi.waitFor(() => expect(gateway.feed.slice(seen)).toContain("disconnected"), {
      timeout: 5000,
      interval: 20,
    });
    await stack.advance(STALE_AFTER_MS + 1, { waitFresh: false });
    expect(gateway.wiring.state.isFresh()).toBe(false);

    expect(await readyz()).toMatchObject({ status: 503, body: { ok: false, fresh: false } });
    const proxied = await pb(gateway.app, "/calls/next", { bearer: await stack.session(control.token) });
    expect([proxied.status, await errorCode(proxied)]).toEqual([503, "unavailable"]);
    expect(proxied.headers.get("retry-after")).not.toBeNull();
    const calling = await pb(gateway.app, "/", {
      bearer: await stack.session(control.token),
      accept: "text/html",
    });
    expect(calling.status).toBe(503);
    const redeemed = await redeem(gateway.app, unredeemed.token);
    expect([redeemed.res.status, await errorCode(redeemed.res)]).toEqual([503, "unavailable"]);
    expect(redeemed.cookie).toBeNull();
    const page = await landing(gateway.app, unredeemed.token, "application/json");
    expect([page.status, await errorCode(page)]).toEqual([503, "unavailable"]);
    // Refused before any use was counted.
    expect((await stack.api("GET", `/v1/links/${unredeemed.id}`)).body.uses).toBe(0);
  });

  it("a revocation made during the outage is stored, though its publish fails", async () => {
    const warnings = stack.tokenService.logs.length;
    const hints = stack.tokenService.bus.published.length;
    const r = await stack.api("POST", "/v1/revocations", {
      body: { scope: "link", linkId: revokedDuringOutage.id, reason: "revoked while the feed was down" },
    });
    expect(r.status).toBe(201);
    expect(stack.tokenService.logs.slice(warnings)).toContainEqual(
      expect.objectContaining({ level: "warn", msg: expect.stringContaining("not published") }),
    );
    expect(stack.tokenService.bus.published.length).toBe(hints);
    expect((await stack.api("GET", `/v1/links/${revokedDuringOutage.id}`)).body.status).toBe("revoked");
    // Still closed: the gateway neither serves the revoked link nor any other.
    expect(await nextCall(gateway.app, await stack.session(control.token))).toEqual({
      status: 503,
      code: "unavailable",
    });
    expect(await nextCall(gateway.app, await stack.session(revokedDuringOutage.token))).toEqual({
      status: 503,
      code: "unavailable",
    });
  });

  it("once the feed is back, the same gateway reloads, applies the revocation and serves again", async () => {
    const seen = gateway.feed.length;
    proxy.restore();
    // Reconnection backs off up to 2 s between attempts: a generous bound, polled.
    await vi.waitFor(
      async () =>
        expect(await nextCall(gateway.app, await stack.session(control.token))).toEqual({
          status: 200,
          code: null,
        }),
      { timeout: 10_000, interval: 20 },
    );
    expect(await nextCall(gateway.app, await stack.session(revokedDuringOutage.token))).toEqual({
      status: 403,
      code: "revoked",
    });
    expect(await readyz()).toMatchObject({ status: 200, body: { ok: true, fresh: true } });
    const { res, cookie } = await redeem(gateway.app, unredeemed.token);
    expect(res.status).toBe(303);
    expect((await pb(gateway.app, "/calls/next", { cookie: cookie! })).status).toBe(200);
    // The same gateway all along, back on the feed: no restart.
    expect(stack.gateways).toEqual([gateway]);
    expect(gateway.feed.slice(seen)).toContain("connected");
    // And the token service publishes again: the next revocation arrives as a message.
    await vi.waitFor(() => expect(gateway.feed.slice(seen)).toContain("heartbeat"), {
      timeout: 5000,
      interval: 20,
    });
    const hints = stack.tokenService.bus.published.length;
    const r = await stack.api("POST", "/v1/revocations", {
      body: { scope: "link", linkId: control.id, reason: "after" },
    });
    expect(r.status).toBe(201);
    expect(stack.tokenService.bus.published.length).toBe(hints + 1);
    await vi.waitFor(
      async () =>
        expect(await nextCall(gateway.app, await stack.session(control.token))).toEqual({
          status: 403,
          code: "revoked",
        }),
      { timeout: 5000, interval: 20 },
    );
  });
});

describeIntegration("a gateway whose database is cut (Postgres)", ["postgres"], () => {
  let proxy: TcpProxy;
  let stack: Stack;
  let gateway: GatewayNode;
  let bearer: IssuedLink;
  let unredeemed: IssuedLink;

  beforeAll(async () => {
    proxy = await TcpProxy.start(targetOf(TEST_DATABASE_URL));
    const db = await createTestDatabase();
    stack = await startStack({ db, feed: memoryFeed(), gateways: 0 });
    // The token service keeps its own pool; only this gateway reaches Postgres through the proxy.
    gateway = await stack.startGateway("gateway-via-proxy", { databaseUrl: viaProxy(db.url, proxy) });
    const seed = await seedOpen(stack);
    bearer = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
    unredeemed = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
    await stack.synced();
  });

  afterAll(async () => {
    await stack?.close();
    await proxy?.close();
  });

  it("refuses redemption and the landing page with 503 unavailable, and is not ready", async () => {
    expect(await nextCall(gateway.app, await stack.session(bearer.token))).toEqual({
      status: 200,
      code: null,
    });
    proxy.cut();
    expect((await gateway.app.request("/readyz")).status).toBe(503);
    // The contract: "unavailable 503 — the check cannot be made safely (store unreachable…)".
    const redeemed = await redeem(gateway.app, unredeemed.token);
    expect
      .soft([redeemed.res.status, await errorCode(redeemed.res)], "POST /l/:token")
      .toEqual([503, "unavailable"]);
    expect(redeemed.cookie).toBeNull();
    const page = await landing(gateway.app, unredeemed.token, "application/json");
    expect.soft([page.status, await errorCode(page)], "GET /l/:token").toEqual([503, "unavailable"]);
  });

  it("stops serving member data once its audit events cannot be written for long", async () => {
    // The audit writer gives up being healthy 2 s (by the shared clock) after the oldest unwritten event.
    stack.clock.advance(2_001);
    stack.feed.beat();
    expect(await nextCall(gateway.app, await stack.session(bearer.token))).toEqual({
      status: 503,
      code: "unavailable",
    });
  });

  it("serves again once the database is back", async () => {
    proxy.restore();
    await vi.waitFor(
      async () =>
        expect(await nextCall(gateway.app, await stack.session(bearer.token))).toEqual({
          status: 200,
          code: null,
        }),
      { timeout: 10_000, interval: 20 },
    );
    const { res } = await redeem(gateway.app, unredeemed.token);
    expect(res.status).toBe(303);
    expect((await gateway.app.request("/readyz")).status).toBe(200);
  });
});
