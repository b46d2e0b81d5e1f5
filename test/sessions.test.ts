/**
 * Sessions across instances: a token service and two gateways over one real Postgres and Redis.
 * A session opened on one gateway works on the other; ending it, or revoking its link or its
 * volunteer, ends it on both; an end whose announcement was lost is caught by the version poll.
 * Sessions live in Postgres; Redis carries the hints and counters, here once on one Redis and once
 * on a Redis Cluster.
 */

import { sha256Hex } from "@phaselock/core";
import { createRepos } from "@phaselock/db";
import { createTestDatabase } from "@phaselock/db/testing";
import { startVersionPoller } from "@phaselock/gateway";
import { describeIntegration, REDIS_TARGETS, uniquePrefix } from "@phaselock/testkit";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { issue, nextCall, seedOpen, tokenOf, uid } from "./support/client.ts";
import { redisFeed } from "./support/feeds.ts";
import { type GatewayNode, type Stack, startStack } from "./support/stack.ts";

const POLL = { timeout: 5000, interval: 20 };
const ok = { status: 200, code: null };
const ended = { status: 401, code: "token_invalid" };

// Once on one Redis, once on a Redis Cluster.
for (const target of REDIS_TARGETS)
  describeIntegration(
    `sessions across two gateways (Postgres + ${target.name})`,
    ["postgres", ...target.needs],
    () => {
      const TEST_REDIS_URL = target.url;
      let stack: Stack;
      let a: GatewayNode;
      let b: GatewayNode;

      /** Redeems on `g` as a script (JSON): the session credential. */
      const open = async (g: GatewayNode, linkPath: string): Promise<string> => {
        const res = await g.app.request(`/l/${linkPath}`, {
          method: "POST",
          headers: { accept: "application/json" },
        });
        expect(res.status).toBe(201);
        return ((await res.json()) as { session: string }).session;
      };
      const onBoth = async (session: string, want: { status: number; code: string | null }) => {
        await vi.waitFor(async () => {
          for (const g of stack.gateways) expect(await nextCall(g.app, session), g.name).toEqual(want);
        }, POLL);
      };

      beforeAll(async () => {
        stack = await startStack({
          db: await createTestDatabase(),
          feed: redisFeed({ url: TEST_REDIS_URL, prefix: uniquePrefix("e2e-sessions"), heartbeatMs: 200 }),
          redisLimits: { url: TEST_REDIS_URL, prefix: uniquePrefix("e2e-sessions-limits") },
          gateways: 2,
        });
        [a, b] = stack.gateways as [GatewayNode, GatewayNode];
        await vi.waitFor(() => {
          for (const g of stack.gateways) expect(g.feed).toContain("heartbeat");
        }, POLL);
      });

      afterAll(async () => {
        await stack?.close();
      });

      it("a session opened on one gateway (by short link) works on the other; ended on one, it is ended on both", async () => {
        const s = await seedOpen(stack);
        const link = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
        await stack.synced();
        const session = await open(a, tokenOf(link.url));
        await onBoth(session, ok); // and both have it cached now
        const res = await b.app.request("/pb/_phaselock/session/end", {
          method: "POST",
          headers: { authorization: `Bearer ${session}` },
        });
        expect(res.status).toBe(204);
        await onBoth(session, ended);
        // Only the hash is stored: neither the session nor the link code appears in the tables.
        const rows = JSON.stringify(
          await stack.db.handle.db.execute(
            `select s.*, l.code_hash from sessions s join links l on l.id = s.link_id`,
          ),
        );
        expect(rows).not.toContain(session);
        expect(rows).not.toContain(tokenOf(link.url));
        expect(rows).toContain(sha256Hex(session));
      });

      it.each(["link", "volunteer"] as const)(
        "revoking the %s ends its sessions on both gateways",
        async (scope) => {
          const s = await seedOpen(stack);
          const volunteerRef = uid("vol");
          const link = await issue(stack, {
            campaignId: s.campaignId,
            phase: s.phase,
            volunteer: { ref: volunteerRef },
          });
          await stack.synced();
          const session = await open(b, link.token);
          await onBoth(session, ok);
          const body = scope === "link" ? { scope, linkId: link.id } : { scope, volunteerRef };
          const r = await stack.api("POST", "/v1/revocations", {
            body: { ...body, reason: `e2e: ${scope}` },
          });
          expect(r.status).toBe(201);
          await onBoth(session, { status: 403, code: "revoked" });
        },
      );

      it("a device re-opening its link on one gateway retires the old credential on the other, announced on the feed", async () => {
        const s = await seedOpen(stack);
        const link = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
        await stack.synced();
        const page = await a.app.request(`/l/${link.token}`);
        const device = page.headers.getSetCookie()[0]!.split(";")[0]!;
        const redeem = async (): Promise<string> => {
          const res = await a.app.request(`/l/${link.token}`, {
            method: "POST",
            headers: { accept: "application/json", cookie: device },
          });
          expect(res.status).toBe(201);
          return ((await res.json()) as { session: string }).session;
        };
        const first = await redeem();
        await onBoth(first, ok); // cached on both
        const heard: number[] = [];
        const unlisten = b.bus.subscribe({
          onMessage: (h) => void heard.push(h.version),
          onStatus: () => {},
        });
        try {
          const second = await redeem();
          // A hint, not only the next heartbeat's read of the log.
          await vi.waitFor(() => expect(heard.length).toBeGreaterThan(0), POLL);
          await onBoth(first, ended);
          await onBoth(second, ok);
        } finally {
          unlisten();
        }
      });

      it("an ended session whose announcement was lost stops working at the next version poll", async () => {
        const s = await seedOpen(stack);
        const link = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
        await stack.synced();
        const session = await open(a, link.token);
        await onBoth(session, ok);
        // Ended in Postgres with no message on the feed (as if it were lost). A gateway's heartbeat reads the
        // change log, so it may notice the end before the poll below: either answer is fine until then.
        const r = await createRepos(stack.db.handle.db).sessions.end(
          sha256Hex(session),
          "test",
          stack.clock.now(),
        );
        expect(r).not.toBeNull();
        for (const g of stack.gateways) expect([ok, ended]).toContainEqual(await nextCall(g.app, session));
        const pollers = stack.gateways.map((g) => startVersionPoller(g.wiring, 50));
        try {
          await onBoth(session, ended);
        } finally {
          for (const p of pollers) p.stop();
        }
      });
    },
  );
