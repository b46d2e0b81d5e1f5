/**
 * Failure modes with faults injected by a TCP proxy this file runs (a real outage for the
 * services behind it; the shared servers stay up for other files):
 * - the token service's Postgres unreachable → `503 unavailable` problem+json on every route,
 *   never 500, and it recovers by itself;
 * - a gateway's Postgres unreachable → it keeps serving from its confirmed state until the
 *   staleness bound (shared FakeClock), then refuses; serves again once Postgres is back;
 * - Redis flapping for a simulated minute loses no revocation made during it;
 * - a Redis Cluster node stopped (a cluster of this file's own, real processes): gateways keep
 *   serving within the staleness bound, then refuse; once the node is back they recover, with
 *   what was revoked meanwhile applied.
 */

import { createTestDatabase } from "@phaselock/db/testing";
import { taggedKey } from "@phaselock/state";
import {
  describeIntegration,
  type PrivateRedisCluster,
  startPrivateRedisCluster,
  TcpProxy,
  TEST_DATABASE_URL,
  TEST_REDIS_URL,
  targetOf,
  uniquePrefix,
  viaProxy,
} from "@phaselock/testkit";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { type IssuedLink, issue, nextCall, seedOpen } from "./support/client.ts";
import { memoryFeed, redisFeed } from "./support/feeds.ts";
import { type GatewayNode, type Stack, startStack } from "./support/stack.ts";

const POLL = { timeout: 15_000, interval: 25 };

describeIntegration("the token service while its database is unreachable (Postgres)", ["postgres"], () => {
  let proxy: TcpProxy;
  let stack: Stack;
  let seed: Awaited<ReturnType<typeof seedOpen>>;
  let link: IssuedLink;
  let coordinatorKey: string;

  beforeAll(async () => {
    proxy = await TcpProxy.start(targetOf(TEST_DATABASE_URL));
    const db = await createTestDatabase();
    stack = await startStack({ db, feed: memoryFeed(), tokenServiceDatabaseUrl: viaProxy(db.url!, proxy) });
    seed = await seedOpen(stack);
    link = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
    const key = await stack.api<{ key: string }>("POST", "/v1/api-keys", {
      body: { role: "coordinator", campaignId: seed.campaignId },
    });
    expect(key.status).toBe(201);
    coordinatorKey = key.body.key;
  });

  afterAll(async () => {
    await stack?.close();
    await proxy?.close();
  });

  const now = () => stack.clock.now().getTime();
  /** Requests that need the database to answer, each with a valid body. */
  const needsDatabase = (): Array<[string, string, unknown?]> => [
    ["GET", "/readyz"],
    ["GET", `/v1/contests/${seed.contestId}`],
    [
      "PUT",
      `/v1/contests/${seed.contestId}`,
      {
        name: "x",
        phases: [
          {
            name: "open",
            startsAt: new Date(now() - 86_400_000).toISOString(),
            endsAt: new Date(now() + 86_400_000).toISOString(),
            memberData: true,
          },
        ],
      },
    ],
    ["PUT", `/v1/campaigns/${seed.campaignId}`, { name: "x", contestId: seed.contestId }],
    ["PUT", `/v1/campaigns/${seed.campaignId}/entitlements/open`, { scopes: ["calls:read"] }],
    [
      "POST",
      "/v1/links",
      { campaignId: seed.campaignId, phase: seed.phase, scopes: ["calls:read"], volunteer: { ref: "v-1" } },
    ],
    ["GET", "/v1/links"],
    ["GET", `/v1/links/${link.id}`],
    ["POST", "/v1/revocations", { scope: "link", linkId: link.id, reason: "outage" }],
    ["GET", "/v1/revocations"],
    ["POST", "/v1/keys/rotate"],
    ["GET", "/.well-known/jwks.json"],
    ["GET", "/v1/audit"],
    ["GET", "/v1/audit/verify"],
    ["DELETE", "/v1/api-keys/key_nothere"],
    ["POST", `/v1/keys/${"k".repeat(20)}/revoke`, { reason: "outage" }],
    ["GET", "/v1/reports/dead-links"],
  ];

  it("answers 503 unavailable problem+json on every route, never 500", async () => {
    const doc = (await (await stack.tokenService.app.request("/openapi.json")).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    proxy.cut();

    for (const [method, path, body] of needsDatabase()) {
      const r = await stack.api(method, path, body === undefined ? {} : { body });
      expect.soft([r.status, r.body?.code], `${method} ${path}`).toEqual([503, "unavailable"]);
      expect.soft(r.res.headers.get("content-type"), `${method} ${path}`).toBe("application/problem+json");
    }
    // A coordinator's key is looked up in the database: 503, not 401.
    const asCoordinator = await stack.api("GET", "/v1/links", { token: coordinatorKey });
    expect([asCoordinator.status, asCoordinator.body.code]).toEqual([503, "unavailable"]);

    // Every documented route, whatever it is sent: never a 500. Raw requests: some answer text
    // without the database (the audit verifier key is held in memory).
    for (const [template, methods] of Object.entries(doc.paths)) {
      const path = template.replace(/\{[^}]+\}/g, "x1");
      for (const method of Object.keys(methods)) {
        const withBody = method !== "get" && method !== "delete";
        const res = await stack.tokenService.app.request(path, {
          method: method.toUpperCase(),
          headers: {
            authorization: `Bearer ${stack.adminToken}`,
            ...(withBody ? { "content-type": "application/json" } : {}),
          },
          ...(withBody ? { body: "{}" } : {}),
        });
        const r = { status: res.status, res };
        expect.soft(r.status, `${method} ${template}`).not.toBe(500);
        if (r.status >= 400) {
          expect
            .soft(r.res.headers.get("content-type"), `${method} ${template}`)
            .toBe("application/problem+json");
        }
      }
    }
    expect(stack.tokenService.logs.filter((l) => l.msg === "unhandled error")).toEqual([]);
  });

  it("recovers by itself once the database is back", async () => {
    proxy.restore();
    await vi.waitFor(async () => expect((await stack.api("GET", "/v1/links")).status).toBe(200), POLL);
    expect((await stack.api("GET", `/v1/links/${link.id}`)).status).toBe(200);
    const issued = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
    expect(issued.token).toBeTruthy();
    await stack.advance(0, { waitFresh: false });
    await vi.waitFor(async () => expect((await stack.api("GET", "/readyz")).status).toBe(200), POLL);
  });
});

describeIntegration(
  "the services while their database stops answering (Postgres stalled)",
  ["postgres"],
  () => {
    // A stall: the proxy keeps every connection open and passes nothing, as a paused server or a
    // partition that drops packets does. Without the pools' stall watch every request below waits
    // for as long as TCP does (the test's timeout). A short deadline, real time.
    const stallWatch = { intervalMs: 25, deadlineMs: 300 };
    let tsProxy: TcpProxy;
    let gwProxy: TcpProxy;
    let stack: Stack;
    let gateway: GatewayNode;
    let session: string;

    beforeAll(async () => {
      const db = await createTestDatabase();
      tsProxy = await TcpProxy.start(targetOf(db.url));
      gwProxy = await TcpProxy.start(targetOf(db.url));
      stack = await startStack({
        db,
        feed: memoryFeed(),
        gateways: 0,
        stallWatch,
        tokenServiceDatabaseUrl: viaProxy(db.url, tsProxy),
      });
      gateway = await stack.startGateway("gateway-via-proxy", { databaseUrl: viaProxy(db.url, gwProxy) });
      const seed = await seedOpen(stack);
      const link = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
      await stack.synced();
      session = await stack.session(link.token);
    });

    afterAll(async () => {
      tsProxy?.restore();
      gwProxy?.restore();
      await stack?.close();
      await tsProxy?.close();
      await gwProxy?.close();
    });

    it("the token service answers 503 unavailable, then serves again once the database answers", async () => {
      expect((await stack.api("GET", "/v1/links")).status).toBe(200);
      tsProxy.stall();
      const list = await stack.api("GET", "/v1/links");
      expect([list.status, list.body?.code]).toEqual([503, "unavailable"]);
      expect(list.res.headers.get("content-type")).toBe("application/problem+json");
      const rotate = await stack.api("POST", "/v1/keys/rotate");
      expect([rotate.status, rotate.body?.code]).toEqual([503, "unavailable"]);
      tsProxy.restore();
      await vi.waitFor(async () => expect((await stack.api("GET", "/v1/links")).status).toBe(200), POLL);
      expect(stack.tokenService.logs.filter((l) => l.msg === "unhandled error")).toEqual([]);
    });

    it("a gateway refuses member data 503 unavailable (its audit event cannot be made durable), then serves again", async () => {
      expect(await nextCall(gateway.app, session)).toEqual({ status: 200, code: null });
      gwProxy.stall();
      expect(await nextCall(gateway.app, session)).toEqual({ status: 503, code: "unavailable" });
      gwProxy.restore();
      await vi.waitFor(
        async () => expect(await nextCall(gateway.app, session)).toEqual({ status: 200, code: null }),
        POLL,
      );
    });
  },
);

describeIntegration("a gateway while its database is unreachable (Postgres)", ["postgres"], () => {
  const STALE_AFTER_MS = 1000;
  let proxy: TcpProxy;
  let stack: Stack;
  let gateway: GatewayNode;
  let link: IssuedLink;
  /** The link's session (a link token on `/pb` is `session_required`), opened while Postgres is reachable. */
  let session: string;

  beforeAll(async () => {
    proxy = await TcpProxy.start(targetOf(TEST_DATABASE_URL));
    const db = await createTestDatabase();
    // Audit in memory: what is under test is the policy state's bound, not the audit trail's.
    stack = await startStack({
      db,
      feed: memoryFeed(),
      gateways: 0,
      staleAfterMs: STALE_AFTER_MS,
      audit: "memory",
    });
    gateway = await stack.startGateway("gateway-via-proxy", { databaseUrl: viaProxy(db.url!, proxy) });
    const seed = await seedOpen(stack);
    link = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
    await stack.synced();
  });

  afterAll(async () => {
    await stack?.close();
    await proxy?.close();
  });

  it("keeps serving from its confirmed state until the staleness bound, then refuses", async () => {
    session = await stack.session(link.token);
    expect(await nextCall(gateway.app, session)).toEqual({ status: 200, code: null });
    proxy.cut();
    // Heartbeats keep coming, but none is passed on without a successful read of the log.
    stack.clock.advance(STALE_AFTER_MS - 100);
    stack.feed.beat();
    await gateway.wiring.catchUp();
    expect(gateway.wiring.state.isFresh()).toBe(true);
    expect(await nextCall(gateway.app, session)).toEqual({ status: 200, code: null });

    stack.clock.advance(200);
    stack.feed.beat();
    await gateway.wiring.catchUp();
    expect(gateway.wiring.state.isFresh()).toBe(false);
    expect(await nextCall(gateway.app, session)).toEqual({ status: 503, code: "unavailable" });
    expect((await gateway.app.request("/readyz")).status).toBe(503);
  });

  it("serves again once the database is back, with what changed meanwhile", async () => {
    const r = await stack.api("POST", "/v1/revocations", {
      body: { scope: "link", linkId: link.id, reason: "while the gateway's database was cut" },
    });
    expect(r.status).toBe(201);
    proxy.restore();
    await vi.waitFor(async () => {
      stack.feed.beat();
      await gateway.wiring.catchUp();
      expect(gateway.wiring.state.isFresh()).toBe(true);
    }, POLL);
    expect(await nextCall(gateway.app, session)).toEqual({ status: 403, code: "revoked" });
  });
});

describeIntegration("Redis flapping for a minute (Postgres + Redis)", ["postgres", "redis"], () => {
  let proxy: TcpProxy;
  let stack: Stack;

  beforeAll(async () => {
    proxy = await TcpProxy.start(targetOf(TEST_REDIS_URL));
    stack = await startStack({
      db: await createTestDatabase(),
      feed: redisFeed({
        url: viaProxy(TEST_REDIS_URL, proxy),
        prefix: uniquePrefix("e2e-flap"),
        heartbeatMs: 50,
      }),
      gateways: 2,
      audit: "memory",
    });
    await vi.waitFor(() => {
      for (const g of stack.gateways) expect(g.feed).toContain("heartbeat");
    }, POLL);
  });

  afterAll(async () => {
    await stack?.close();
    await proxy?.close();
  });

  it("loses no revocation made while it flaps", async () => {
    const seed = await seedOpen(stack);
    const links: IssuedLink[] = [];
    for (let i = 0; i < 12; i++)
      links.push(await issue(stack, { campaignId: seed.campaignId, phase: seed.phase }));
    const control = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
    await stack.synced();

    // Six cycles of 10 s on the shared clock: cut, revoke, 5 s, restore, revoke, 5 s.
    for (let cycle = 0; cycle < 6; cycle++) {
      proxy.cut();
      const during = links[cycle * 2]!;
      expect(
        (
          await stack.api("POST", "/v1/revocations", {
            body: { scope: "link", linkId: during.id, reason: "cut" },
          })
        ).status,
      ).toBe(201);
      await stack.advance(5000, { waitFresh: false });
      proxy.restore();
      const after = links[cycle * 2 + 1]!;
      expect(
        (
          await stack.api("POST", "/v1/revocations", {
            body: { scope: "link", linkId: after.id, reason: "back" },
          })
        ).status,
      ).toBe(201);
      await stack.advance(5000, { waitFresh: false });
    }

    await stack.synced(15_000);
    for (const g of stack.gateways) {
      for (const l of links)
        expect(await nextCall(g.app, await stack.session(l.token)), `${g.name} ${l.id}`).toEqual({
          status: 403,
          code: "revoked",
        });
      expect(await nextCall(g.app, await stack.session(control.token)), g.name).toEqual({
        status: 200,
        code: null,
      });
    }
  });
});

describeIntegration(
  "a Redis Cluster node stopped (Postgres + Redis Cluster)",
  ["postgres", "redis-cluster"],
  () => {
    const STALE_AFTER_MS = 300;
    const prefix = uniquePrefix("e2e-cluster-node");
    const limitsPrefix = uniquePrefix("e2e-cluster-limits");
    let cluster: PrivateRedisCluster;
    let stack: Stack;
    let control: IssuedLink;
    let revokedDuringOutage: IssuedLink;
    let feedNode: number;

    beforeAll(async () => {
      cluster = await startPrivateRedisCluster();
      stack = await startStack({
        db: await createTestDatabase(),
        feed: redisFeed({ url: cluster.url, prefix, heartbeatMs: 50 }),
        redisLimits: { url: cluster.url, prefix: limitsPrefix },
        gateways: 2,
        staleAfterMs: STALE_AFTER_MS,
      });
      const seed = await seedOpen(stack);
      control = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
      revokedDuringOutage = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
      await stack.synced();
      await vi.waitFor(() => {
        for (const g of stack.gateways) expect(g.feed).toContain("heartbeat");
      }, POLL);
      // The master serving the feed's shard channels (both carry one hash tag).
      feedNode = await cluster.portFor(taggedKey(prefix, "feed", ":changes"));
    }, 60_000);

    afterAll(async () => {
      await stack?.close();
      await cluster?.close();
    });

    it("serves on both gateways while every node is up", async () => {
      for (const g of stack.gateways)
        expect(await nextCall(g.app, await stack.session(control.token)), g.name).toEqual({
          status: 200,
          code: null,
        });
    });

    it("with the node holding a link's rate limit stopped, that link is refused, never served unmetered", async () => {
      const seed = await seedOpen(stack);
      // A link whose limiter key lives on another node than the feed's channels.
      let link: IssuedLink;
      let limiterNode: number;
      do {
        link = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
        limiterNode = await cluster.portFor(taggedKey(limitsPrefix, `rl:link:${link.id}`));
      } while (limiterNode === feedNode);
      await stack.synced();
      const session = await stack.session(link.token);
      for (const g of stack.gateways)
        expect(await nextCall(g.app, session), g.name).toEqual({ status: 200, code: null });

      await cluster.stop(limiterNode);
      for (const g of stack.gateways)
        expect(await nextCall(g.app, session), g.name).toEqual({ status: 503, code: "unavailable" });

      await cluster.start(limiterNode);
      for (const g of stack.gateways)
        await vi.waitFor(
          async () => expect(await nextCall(g.app, session), g.name).toEqual({ status: 200, code: null }),
          { timeout: 30_000, interval: 50 },
        );
    }, 60_000);

    it("with the feed's node stopped: the feed goes down, and past the staleness bound both refuse", async () => {
      const marks = stack.gateways.map((g) => g.feed.length);
      await cluster.stop(feedNode);
      await vi.waitFor(() => {
        stack.gateways.forEach((g, i) => {
          expect(g.feed.slice(marks[i]), g.name).toContain("disconnected");
        });
      }, POLL);
      await stack.advance(STALE_AFTER_MS + 1, { waitFresh: false });
      for (const g of stack.gateways) {
        expect(g.wiring.state.isFresh(), g.name).toBe(false);
        expect(await nextCall(g.app, await stack.session(control.token)), g.name).toEqual({
          status: 503,
          code: "unavailable",
        });
        expect((await g.app.request("/readyz")).status, g.name).toBe(503);
      }
      // Postgres holds the revocation though no hint can be published.
      const r = await stack.api("POST", "/v1/revocations", {
        body: { scope: "link", linkId: revokedDuringOutage.id, reason: "revoked while a node was down" },
      });
      expect(r.status).toBe(201);
    });

    it("once the node is back, both gateways recover by themselves and apply the revocation", async () => {
      await cluster.start(feedNode);
      for (const g of stack.gateways) {
        await vi.waitFor(
          async () =>
            expect(await nextCall(g.app, await stack.session(control.token)), g.name).toEqual({
              status: 200,
              code: null,
            }),
          { timeout: 30_000, interval: 50 },
        );
        expect(await nextCall(g.app, await stack.session(revokedDuringOutage.token)), g.name).toEqual({
          status: 403,
          code: "revoked",
        });
      }
      // And hints flow again: the next revocation reaches both as a message.
      const r = await stack.api("POST", "/v1/revocations", {
        body: { scope: "link", linkId: control.id, reason: "after the node came back" },
      });
      expect(r.status).toBe(201);
      for (const g of stack.gateways)
        await vi.waitFor(
          async () =>
            expect(await nextCall(g.app, await stack.session(control.token)), g.name).toEqual({
              status: 403,
              code: "revoked",
            }),
          POLL,
        );
    }, 60_000);
  },
);

describeIntegration(
  "a Redis Cluster master failed over to its replica (Postgres + Redis Cluster)",
  ["postgres", "redis-cluster"],
  () => {
    const STALE_AFTER_MS = 300;
    const prefix = uniquePrefix("e2e-cluster-failover");
    let cluster: PrivateRedisCluster;
    let stack: Stack;
    let control: IssuedLink;
    let revokedAfterFailover: IssuedLink;

    beforeAll(async () => {
      cluster = await startPrivateRedisCluster({ replicas: 1 });
      stack = await startStack({
        db: await createTestDatabase(),
        feed: redisFeed({ url: cluster.url, prefix, heartbeatMs: 50 }),
        redisLimits: { url: cluster.url, prefix: uniquePrefix("e2e-cluster-failover-limits") },
        gateways: 2,
        staleAfterMs: STALE_AFTER_MS,
      });
      const seed = await seedOpen(stack);
      control = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
      revokedAfterFailover = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
      await stack.synced();
      await vi.waitFor(() => {
        for (const g of stack.gateways) expect(g.feed).toContain("heartbeat");
      }, POLL);
    }, 60_000);

    afterAll(async () => {
      await stack?.close();
      await cluster?.close();
    });

    it("the feed's master stopped for good: once its replica takes over, both gateways serve again and hear hints", async () => {
      const feedMaster = await cluster.portFor(taggedKey(prefix, "feed", ":changes"));
      const marks = stack.gateways.map((g) => g.feed.length);
      await cluster.stop(feedMaster);
      await vi.waitFor(() => {
        stack.gateways.forEach((g, i) => {
          expect(g.feed.slice(marks[i]), g.name).toContain("disconnected");
        });
      }, POLL);
      // The replica is promoted (cluster-node-timeout 1 s) and the cluster is whole again, without
      // the old master.
      await vi.waitFor(
        async () => expect(await cluster.portFor(taggedKey(prefix, "feed", ":changes"))).not.toBe(feedMaster),
        { timeout: 30_000, interval: 100 },
      );
      await cluster.healthy();
      for (const g of stack.gateways)
        await vi.waitFor(
          async () =>
            expect(await nextCall(g.app, await stack.session(control.token)), g.name).toEqual({
              status: 200,
              code: null,
            }),
          { timeout: 30_000, interval: 50 },
        );
      // Hints flow on the new master: a revocation reaches both gateways.
      const r = await stack.api("POST", "/v1/revocations", {
        body: { scope: "link", linkId: revokedAfterFailover.id, reason: "after the failover" },
      });
      expect(r.status).toBe(201);
      for (const g of stack.gateways)
        await vi.waitFor(
          async () =>
            expect(await nextCall(g.app, await stack.session(revokedAfterFailover.token)), g.name).toEqual({
              status: 403,
              code: "revoked",
            }),
          POLL,
        );
    }, 60_000);
  },
);

describeIntegration(
  "Redis lost while a gateway serves limits from leases (Postgres + Redis)",
  ["postgres", "redis"],
  () => {
    let proxy: TcpProxy;
    let stack: Stack;

    beforeAll(async () => {
      proxy = await TcpProxy.start(targetOf(TEST_REDIS_URL));
      stack = await startStack({
        db: await createTestDatabase(),
        // The feed does not go through the proxy: what refuses here is the meter, not staleness.
        feed: memoryFeed(),
        redisLimits: { url: viaProxy(TEST_REDIS_URL, proxy), prefix: uniquePrefix("e2e-lease-limits") },
        // Limits large enough for leases of many tokens and slots on every step, link and campaign
        // alike (campaignFactor 1: the exact meter would need Redis for the campaign's steps).
        limitDefaults: { requestsPerMinute: 2000, recordsPerHour: 2000, campaignFactor: 1 },
        leasedLimits: true,
        // Rate tokens ahead as well (off by default): nothing is served from a lease once Redis is
        // gone, whatever the lease holds.
        leasedRateTokens: true,
        audit: "memory",
      });
    });

    afterAll(async () => {
      await stack?.close();
      await proxy?.close();
    });

    it("refuses the next request once Redis is unreachable, never serving it from a lease", async () => {
      const seed = await seedOpen(stack);
      const link = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
      const session = await stack.session(link.token);
      const gateway = stack.gateways[0]!;
      const limits = gateway.limits!;
      // A hot link: its leases grow until whole requests are served without a round trip.
      for (let i = 0; i < 80; i++)
        expect(await nextCall(gateway.app, session)).toEqual({ status: 200, code: null });
      expect(limits.meter.held.tokens).toBeGreaterThan(0);
      expect(limits.meter.held.slots).toBeGreaterThan(0);
      let scripts = 0;
      const original = limits.redis.sendCommand.bind(limits.redis);
      limits.redis.sendCommand = ((command: { name: string }) => {
        if (command.name === "evalsha" || command.name === "eval") scripts++;
        return original(command as never);
      }) as typeof limits.redis.sendCommand;
      expect(await nextCall(gateway.app, session)).toEqual({ status: 200, code: null });
      limits.redis.sendCommand = original;
      expect(scripts).toBe(0); // this request was served from leases alone

      proxy.cut();
      await vi.waitFor(() => expect(limits.redis.status).not.toBe("ready"), POLL);
      expect(limits.meter.held).toEqual({ tokens: 0, slots: 0, pending: 0 });
      expect(await nextCall(gateway.app, session)).toEqual({ status: 503, code: "unavailable" });
      expect(await nextCall(gateway.app, session)).toEqual({ status: 503, code: "unavailable" });

      proxy.restore();
      await vi.waitFor(async () => {
        expect(await nextCall(gateway.app, session)).toEqual({ status: 200, code: null });
      }, POLL);
    });
  },
);
