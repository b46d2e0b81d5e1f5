/**
 * The gateway's operational metrics on a real stack (Postgres): a revocation's commit-to-apply lag
 * is observed when a gateway reads it from the change log, and the decisions counter sees the
 * revoked link refused.
 */
import { createTestDatabase } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";
import { issue, nextCall, seedOpen } from "./support/client.ts";
import { memoryFeed } from "./support/feeds.ts";
import { type Stack, startStack } from "./support/stack.ts";

/** A series' value in Prometheus text, by name and a label subset. */
function series(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return undefined;
}

describeIntegration("gateway metrics on a real stack", ["postgres"], () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ db: await createTestDatabase(), feed: memoryFeed() });
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("observes the revocation lag of each applied change, and counts the revoked link's refusal", async () => {
    const gateway = stack.gateways[0]!;
    const metrics = () => gateway.wiring.metrics.registry.metrics();
    const s = await seedOpen(stack);
    const link = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
    await stack.synced();
    expect(await nextCall(gateway.app, await stack.session(link.token))).toEqual({ status: 200, code: null });
    const before = series(await metrics(), "phaselock_gateway_revocation_lag_seconds_count") ?? 0;

    const r = await stack.api("POST", "/v1/revocations", {
      body: { scope: "link", linkId: link.id, reason: "metrics test" },
    });
    expect(r.status).toBe(201);
    await stack.synced();
    expect((await nextCall(gateway.app, await stack.session(link.token))).code).toBe("revoked");

    const text = await metrics();
    expect(series(text, "phaselock_gateway_revocation_lag_seconds_count")).toBeGreaterThan(before);
    const lag = series(text, "phaselock_gateway_revocation_lag_seconds_sum")!;
    expect(lag).toBeGreaterThanOrEqual(0);
    expect(lag).toBeLessThan(60);
    expect(series(text, "phaselock_gateway_decisions_total", { decision: "deny", code: "revoked" })).toBe(1);
    expect(
      series(text, "phaselock_gateway_decisions_total", { decision: "allow", code: "ok" }),
    ).toBeGreaterThan(0);
    expect(series(text, "phaselock_gateway_feed_staleness_seconds")).toBeLessThan(5);
  });
});
