/**
 * Revocation across instances: a token service and two gateways over one real Postgres, each
 * service with its own RedisBus on a channel prefix unique to this file. A revocation must reach
 * both gateways through the feed, survive a restart, and survive a lost message. The whole file
 * runs twice: over one Redis and over a three-node Redis Cluster (`TEST_REDIS_CLUSTER_URL`).
 */

import { createTestDatabase } from "@phaselock/db/testing";
import { startVersionPoller } from "@phaselock/gateway";
import { describeIntegration, REDIS_TARGETS, uniquePrefix } from "@phaselock/testkit";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import {
  errorCode,
  type IssuedLink,
  issue,
  landing,
  nextCall,
  putCampaign,
  putContest,
  redeem,
  seedOpen,
  uid,
} from "./support/client.ts";
import { redisFeed } from "./support/feeds.ts";
import { type GatewayNode, type Stack, startStack } from "./support/stack.ts";

const POLL = { timeout: 5000, interval: 20 };

type Scope = "link" | "volunteer" | "campaign" | "phase" | "contest" | "all";

interface Target {
  link: IssuedLink;
  volunteerRef: string;
  campaignId: string;
  contestId: string;
  phase: string;
}

const revocationBody = (scope: Scope, t: Target): Record<string, string> => {
  const reason = `e2e: ${scope}`;
  switch (scope) {
    case "link":
      return { scope, linkId: t.link.id, reason };
    case "volunteer":
      return { scope, volunteerRef: t.volunteerRef, reason };
    case "campaign":
      return { scope, campaignId: t.campaignId, reason };
    case "phase":
      return { scope, contestId: t.contestId, phase: t.phase, reason };
    case "contest":
      return { scope, contestId: t.contestId, reason };
    case "all":
      return { scope, reason };
  }
};

// Once on one Redis, once on a Redis Cluster (sharded pub/sub, hash-tagged limiter keys).
for (const target of REDIS_TARGETS)
  describeIntegration(
    `revocation across two gateways (Postgres + ${target.name})`,
    ["postgres", ...target.needs],
    () => {
      const TEST_REDIS_URL = target.url;
      let stack: Stack;
      /** Tokens a revocation covers, to check again after a restart. */
      const revoked: string[] = [];
      /** Tokens issued a second after each revocation (a later `all` covers the earlier ones). */
      const working: string[] = [];

      const onBoth = async (token: string, want: { status: number; code: string | null }) => {
        await vi.waitFor(async () => {
          for (const g of stack.gateways)
            expect(await nextCall(g.app, await stack.session(token)), g.name).toEqual(want);
        }, POLL);
      };
      const denied = { status: 403, code: "revoked" };
      const ok = { status: 200, code: null };

      beforeAll(async () => {
        const db = await createTestDatabase();
        // Heartbeats every 200 ms: a bus reconnects (and so reloads) only after 5 missed ones, a second
        // of silence, so the lost-message tests below see the gap detection, not a reconnect.
        stack = await startStack({
          db,
          feed: redisFeed({ url: TEST_REDIS_URL, prefix: uniquePrefix("e2e-revocation"), heartbeatMs: 200 }),
          redisLimits: { url: TEST_REDIS_URL, prefix: uniquePrefix("e2e-limits") },
          gateways: 2,
        });
        // Each gateway's bus has proven the pub/sub round trip before the tests publish anything.
        await vi.waitFor(() => {
          for (const g of stack.gateways) expect(g.feed).toContain("heartbeat");
        }, POLL);
      });

      afterAll(async () => {
        await stack?.close();
      });

      it.each<Scope>(["link", "volunteer", "campaign", "phase", "contest", "all"])(
        "revoking by %s denies on both gateways; links issued after the watermark work",
        async (scope) => {
          const s = await seedOpen(stack);
          const other = await seedOpen(stack);
          const volunteerRef = uid("vol");
          const link = await issue(stack, {
            campaignId: s.campaignId,
            phase: s.phase,
            volunteer: { ref: volunteerRef },
          });
          const bystander = await issue(stack, { campaignId: other.campaignId, phase: other.phase });
          await stack.synced();
          await onBoth(link.token, ok);
          await onBoth(bystander.token, ok);

          const target = {
            link,
            volunteerRef,
            campaignId: s.campaignId,
            contestId: s.contestId,
            phase: s.phase,
          };
          const r = await stack.api<{ id: string; effectiveAt: string }>("POST", "/v1/revocations", {
            body: revocationBody(scope, target),
          });
          expect(r.status).toBe(201);
          expect(r.body.effectiveAt).toBe(stack.clock.now().toISOString());

          await onBoth(link.token, denied);
          if (scope !== "link") {
            // Compared at the token's iat second: a link issued in the revocation's second is covered.
            const sameSecond = await issue(stack, {
              campaignId: s.campaignId,
              phase: s.phase,
              volunteer: { ref: volunteerRef },
            });
            await onBoth(sameSecond.token, denied);
            expect((await stack.api("GET", `/v1/links/${sameSecond.id}`)).body.status).toBe("revoked");
          }
          for (const g of stack.gateways) {
            const page = await landing(g.app, link.token, "application/json");
            expect([page.status, await errorCode(page)]).toEqual([410, "revoked"]);
            const { res } = await redeem(g.app, link.token);
            expect([res.status, await errorCode(res)]).toEqual([403, "revoked"]);
          }
          await onBoth(bystander.token, scope === "all" ? denied : ok);
          revoked.push(link.token);
          // The token service's own view (SQL) agrees with the gateways' index.
          expect((await stack.api("GET", `/v1/links/${link.id}`)).body.status).toBe("revoked");
          expect((await stack.api("GET", `/v1/links/${bystander.id}`)).body.status).toBe(
            scope === "all" ? "revoked" : "active",
          );

          // The watermark is the revocation's second: a link issued a second later is not covered.
          await stack.advance(1000);
          const after = await issue(stack, {
            campaignId: s.campaignId,
            phase: s.phase,
            volunteer: { ref: volunteerRef },
          });
          await onBoth(after.token, ok);
          expect((await stack.api("GET", `/v1/links/${after.id}`)).body.status).toBe("active");
          working.push(after.token);
        },
      );

      it("a gateway restarted on the same database still denies what was revoked", async () => {
        expect(revoked).toHaveLength(6);
        const old = stack.gateways[1]!;
        await old.stop();
        const restarted = await stack.startGateway("gateway-2-restarted");
        expect(stack.gateways.map((g) => g.name)).toEqual(["gateway-1", "gateway-2-restarted"]);
        for (const token of revoked)
          expect(await nextCall(restarted.app, await stack.session(token))).toEqual(denied);
        // The link issued after the last (`all`) watermark.
        expect(await nextCall(restarted.app, await stack.session(working.at(-1)!))).toEqual(ok);
        await vi.waitFor(() => expect(restarted.feed).toContain("heartbeat"), POLL);
      });

      it("a lost hint: the next heartbeat reads the log, and the revocation applies", async () => {
        const s = await seedOpen(stack);
        const lost = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
        const next = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
        await stack.synced();

        stack.tokenService.bus.dropNext();
        const r1 = await stack.api("POST", "/v1/revocations", {
          body: { scope: "link", linkId: lost.id, reason: "lost" },
        });
        expect(r1.status).toBe(201);
        expect(stack.tokenService.bus.dropped).toHaveLength(1);
        // No hint came (and no poller runs here): each gateway's heartbeat reads the log anyway.
        await onBoth(lost.token, denied);

        // The next change: applied from the log in order.
        const r2 = await stack.api("POST", "/v1/revocations", {
          body: { scope: "link", linkId: next.id, reason: "next" },
        });
        expect(r2.status).toBe(201);
        await onBoth(lost.token, denied);
        await onBoth(next.token, denied);
        await stack.synced();
      });

      it("a lost last message is caught by the version poller", async () => {
        const s = await seedOpen(stack);
        const link = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
        await stack.synced();
        stack.tokenService.bus.dropNext();
        const r = await stack.api("POST", "/v1/revocations", {
          body: { scope: "link", linkId: link.id, reason: "last" },
        });
        expect(r.status).toBe(201);
        // No hint came; a heartbeat (every 200 ms) also reads the log, so on a loaded machine one
        // may already have applied the revocation: either answer, never anything else.
        for (const g of stack.gateways)
          expect([ok, denied]).toContainEqual(await nextCall(g.app, await stack.session(link.token)));

        // As the gateway's main.ts runs it, on a short interval.
        const pollers = stack.gateways.map((g: GatewayNode) => startVersionPoller(g.wiring, 50));
        try {
          await onBoth(link.token, denied);
        } finally {
          for (const p of pollers) p.stop();
        }
      });

      it("redemptions on two gateways together count exactly maxUses", async () => {
        const s = await seedOpen(stack);
        const link = await issue(stack, { campaignId: s.campaignId, phase: s.phase, maxUses: 4 });
        await stack.synced();
        for (const g of stack.gateways) expect((await landing(g.app, link.token)).status).toBe(200);

        // Twelve scripts are twelve devices: room for them all, so only the use count refuses.
        for (const g of stack.gateways) g.wiring.deps.config.maxDevicesPerLink = 100;
        const results = await Promise.all(
          Array.from({ length: 12 }, (_, i) => redeem(stack.gateways[i % 2]!.app, link.token)),
        ).finally(() => {
          for (const g of stack.gateways) g.wiring.deps.config.maxDevicesPerLink = 3;
        });
        const statuses = results.map((r) => r.res.status);
        expect(statuses.filter((x) => x === 303)).toHaveLength(4);
        expect(statuses.filter((x) => x === 403)).toHaveLength(8);
        for (const r of results.filter((x) => x.res.status === 403))
          expect(await errorCode(r.res)).toBe("uses_exhausted");
        expect((await stack.api("GET", `/v1/links/${link.id}`)).body.uses).toBe(4);
      });

      it("a link opened on more devices than allowed, across both gateways, is suspended on both", async () => {
        const s = await seedOpen(stack);
        const link = await issue(stack, { campaignId: s.campaignId, phase: s.phase, maxUses: 10 });
        await stack.synced();
        const [a, b] = stack.gateways as [GatewayNode, GatewayNode];
        // Each device keeps the pl_device cookie the gateways issued it (valid on every gateway).
        const devices = new Map<string, string>();
        const open = async (g: GatewayNode, device: string) => {
          if (!devices.has(device)) {
            const page = await g.app.request(`/l/${link.token}`);
            devices.set(device, page.headers.getSetCookie()[0]!.split(";")[0]!);
          }
          return g.app.request(`/l/${link.token}`, {
            method: "POST",
            headers: { "user-agent": `phone ${device}`, cookie: devices.get(device)! },
          });
        };
        // Three devices (the limit), spread over both gateways: each redemption works.
        expect((await open(a, "one")).status).toBe(303);
        expect((await open(b, "two")).status).toBe(303);
        expect((await open(a, "three")).status).toBe(303);
        expect((await open(b, "one")).status).toBe(303); // a device seen before is no new device
        const fourth = await open(b, "four");
        expect([fourth.status, await errorCode(fourth)]).toEqual([403, "suspended"]);
        // Suspended everywhere: the other gateway hears it on the feed.
        await onBoth(link.token, { status: 403, code: "suspended" });
        expect((await stack.api("GET", `/v1/links/${link.id}`)).body.status).toBe("suspended");
      });

      it("a coordinator may revoke only its own campaign's links, by link, volunteer or campaign", async () => {
        const s = await seedOpen(stack, { campaigns: 2 });
        const [mine, theirs] = s.campaignIds as [string, string];
        const key = await stack.api<{ id: string; key: string }>("POST", "/v1/api-keys", {
          body: { role: "coordinator", campaignId: mine },
        });
        expect(key.status).toBe(201);
        const coordinator = key.body.key;
        const shared = uid("vol"); // the same person volunteering for both campaigns
        const own = await issue(
          stack,
          { campaignId: mine, phase: s.phase, volunteer: { ref: shared } },
          coordinator,
        );
        const ownOther = await issue(stack, { campaignId: mine, phase: s.phase }, coordinator);
        const other = await issue(stack, { campaignId: theirs, phase: s.phase, volunteer: { ref: shared } });
        await stack.synced();

        const revoke = (body: Record<string, string>) =>
          stack.api<{ code?: string }>("POST", "/v1/revocations", {
            body: { reason: "coordinator", ...body },
            token: coordinator,
          });
        const refused: Record<string, string>[] = [
          { scope: "link", linkId: other.id },
          { scope: "volunteer", volunteerRef: shared, campaignId: theirs },
          { scope: "campaign", campaignId: theirs },
          { scope: "phase", contestId: s.contestId, phase: s.phase },
          { scope: "contest", contestId: s.contestId },
          { scope: "all" },
        ];
        for (const body of refused) {
          const r = await revoke(body);
          expect([r.status, r.body.code], JSON.stringify(body)).toEqual([403, "forbidden"]);
        }

        // A volunteer revocation by a coordinator is limited to its own campaign.
        expect((await revoke({ scope: "volunteer", volunteerRef: shared })).status).toBe(201);
        await onBoth(own.token, denied);
        await onBoth(ownOther.token, ok);
        expect((await revoke({ scope: "link", linkId: ownOther.id })).status).toBe(201);
        await onBoth(ownOther.token, denied);
        expect((await revoke({ scope: "campaign", campaignId: mine })).status).toBe(201);

        await stack.synced();
        for (const g of stack.gateways)
          expect(await nextCall(g.app, await stack.session(other.token)), g.name).toEqual(ok);
        const list = await stack.api<{
          items: Array<{ actor: string; scope: string; campaignId: string | null }>;
        }>("GET", "/v1/revocations?limit=500");
        const byCoordinator = list.body.items.filter((i) => i.actor === key.body.id);
        expect(byCoordinator.map((i) => [i.scope, i.campaignId]).sort()).toEqual([
          ["campaign", mine],
          ["link", mine],
          ["volunteer", mine],
        ]);
      });

      it("a signing key rotation reaches both gateways: links signed by either key verify", async () => {
        const s = await seedOpen(stack);
        const before = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
        const rotated = await stack.api<{ kid: string; previousKid: string }>("POST", "/v1/keys/rotate");
        expect(rotated.status).toBe(201);
        const after = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
        const kid = (token: string) =>
          JSON.parse(Buffer.from(token.split(".")[0]!, "base64url").toString()).kid;
        expect([kid(before.token), kid(after.token)]).toEqual([rotated.body.previousKid, rotated.body.kid]);
        await onBoth(after.token, ok);
        await onBoth(before.token, ok);
        // A gateway started now learns both keys from the database.
        const fresh = await stack.startGateway();
        expect(await nextCall(fresh.app, await stack.session(after.token))).toEqual(ok);
        expect(await nextCall(fresh.app, await stack.session(before.token))).toEqual(ok);
        await fresh.stop();
      });

      it("withdrawing and granting an entitlement reaches both gateways through the feed", async () => {
        const s = await seedOpen(stack);
        const link = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
        await stack.synced();
        await onBoth(link.token, ok);
        expect((await stack.api("DELETE", `/v1/campaigns/${s.campaignId}/entitlements/open`)).status).toBe(
          204,
        );
        await onBoth(link.token, { status: 403, code: "not_entitled" });
        await putCampaign(stack, s.campaignId, s.contestId, { open: ["calls:read"] });
        await onBoth(link.token, ok);
      });

      it("a campaign's limits reach both gateways through the feed", async () => {
        const s = await seedOpen(stack);
        const r = await stack.api("PUT", `/v1/campaigns/${s.campaignId}`, {
          body: { name: "Limited", contestId: s.contestId, limits: { requestsPerMinute: 1 } },
        });
        expect(r.status).toBe(200);
        await stack.synced();
        for (const g of stack.gateways) {
          expect(g.wiring.state.snapshot.campaigns.get(s.campaignId)?.limits).toEqual({
            requestsPerMinute: 1,
          });
          const link = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
          expect(await nextCall(g.app, await stack.session(link.token))).toEqual(ok);
          expect(await nextCall(g.app, await stack.session(link.token))).toEqual({
            status: 429,
            code: "rate_limited",
          });
        }
      });

      it("every change the token service published decoded on the gateways (no gap, no error)", () => {
        expect(stack.tokenService.bus.published.length).toBeGreaterThan(50);
        for (const g of stack.gateways) {
          expect(g.feed, g.name).not.toContain("gap");
          expect(g.errors, g.name).toEqual([]);
        }
      });

      it("ending a phase early reaches both gateways through the feed", async () => {
        const contestId = uid("contest");
        const now = stack.clock.now().getTime();
        const phase = { name: "ballot", startsAt: new Date(now - 86_400_000), memberData: true };
        await putContest(stack, contestId, [{ ...phase, endsAt: new Date(now + 86_400_000) }]);
        const campaignId = uid("campaign");
        await putCampaign(stack, campaignId, contestId, { ballot: ["calls:read"] });
        const link = await issue(stack, { campaignId, phase: "ballot", scopes: ["calls:read"] });
        await stack.synced();
        for (const g of stack.gateways)
          expect(await nextCall(g.app, await stack.session(link.token))).toEqual({ status: 200, code: null });

        await putContest(stack, contestId, [{ ...phase, endsAt: new Date(now) }]);
        await vi.waitFor(async () => {
          for (const g of stack.gateways) {
            expect(await nextCall(g.app, await stack.session(link.token))).toEqual({
              status: 403,
              code: "phase_closed",
            });
          }
        }, POLL);
      });

      it("every service's audit events form one hash chain that verifies", async () => {
        await stack.advance(0); // flushes every writer
        const verify = await stack.api<{ ok: boolean; events: number }>("GET", "/v1/audit/verify");
        expect(verify.body).toMatchObject({ ok: true });
        expect(verify.body.events).toBeGreaterThan(100);
      });
    },
  );
