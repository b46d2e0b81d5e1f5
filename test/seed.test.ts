/**
 * `pnpm start`'s demo data, seeded by `seedDemo` through the token service's API, then used
 * through a gateway: the three sample outcomes it prints must be what a volunteer gets.
 */
import { errorStatus } from "@phaselock/core";
import { createMemoryDb } from "@phaselock/db/testing";
import { type DemoLinks, seedDemo } from "@phaselock/stack/src/seed.ts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { errorCode, landing, nextCall, pb, redeem, tokenOf } from "./support/client.ts";
import { memoryFeed } from "./support/feeds.ts";
import { type GatewayApp, PUBLIC_GATEWAY_URL, type Stack, startStack } from "./support/stack.ts";

/** Issuance refusals, as the contract lists them. */
const ISSUANCE_CODES = [
  "validation",
  "not_found",
  "forbidden",
  "scope_not_issuable",
  "phase_closed",
  "not_entitled",
];

let stack: Stack;
let gw: GatewayApp;
let demo: DemoLinks;

beforeAll(async () => {
  const handle = await createMemoryDb();
  stack = await startStack({ db: { handle, drop: () => handle.close() }, feed: memoryFeed() });
  gw = stack.gateways[0]!.app;
  // As services/stack/src/main.ts calls it: the token service app, the admin token, JSON bodies.
  demo = await seedDemo(
    (path, init) =>
      Promise.resolve(
        stack.tokenService.app.request(path, {
          method: init.method,
          headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
          body: init.body === undefined ? undefined : JSON.stringify(init.body),
        }),
      ),
    stack.clock.now(),
  );
});

afterAll(async () => {
  await stack?.close();
});

describe("the seeded demo, through a gateway", () => {
  it("hands out link URLs on the public gateway", () => {
    for (const url of [demo.leftover.url, demo.ballot.url]) {
      expect(url.startsWith(`${PUBLIC_GATEWAY_URL}/l/`)).toBe(true);
    }
  });

  it("1. the leftover ge-2019 link is refused with phase_closed", async () => {
    const token = tokenOf(demo.leftover.url);
    expect(await nextCall(gw, await stack.session(token))).toEqual({ status: 403, code: "phase_closed" });
    const page = await landing(gw, token, "application/json");
    expect([page.status, await errorCode(page)]).toEqual([410, "phase_closed"]);
    const { res } = await redeem(gw, token);
    expect([res.status, await errorCode(res)]).toEqual([403, "phase_closed"]);
  });

  it("2. the nominations link is refused at issuance with a 4xx contract code", () => {
    expect(demo.nominations.status).toBeGreaterThanOrEqual(400);
    expect(demo.nominations.status).toBeLessThan(500);
    expect(ISSUANCE_CODES).toContain(demo.nominations.code);
    expect(Object.keys(errorStatus)).toContain(demo.nominations.code);
  });

  it("3. the ballot link opens its landing page and, pressed, reaches the calling page and the next call", async () => {
    const token = tokenOf(demo.ballot.url);
    const page = await landing(gw, token);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("Keir Starmer 2020");

    const { res, cookie } = await redeem(gw, token);
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/pb/");
    const calling = await pb(gw, "/", { cookie: cookie!, accept: "text/html" });
    expect(calling.status).toBe(200);
    const next = await pb(gw, "/calls/next", { cookie: cookie! });
    expect(next.status).toBe(200);
    const body = (await next.json()) as { call: { id: string; member: { id: string } } };
    expect(body.call.member.id).toMatch(/^m_\d{6}$/);
    expect(await nextCall(gw, await stack.session(token))).toEqual({ status: 200, code: null });
  });

  it("the contests it seeds read back as the contract describes", async () => {
    const ge = await stack.api<{ currentPhase: unknown }>("GET", "/v1/contests/ge-2019");
    expect(ge.body.currentPhase).toBeNull();
    const leadership = await stack.api<{ currentPhase: { name: string; memberData: boolean } }>(
      "GET",
      "/v1/contests/leadership-2020",
    );
    expect(leadership.body.currentPhase).toMatchObject({ name: "ballot", memberData: true });
  });
});
