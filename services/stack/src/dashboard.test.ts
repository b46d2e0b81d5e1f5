import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { createMetricsRegistry, type Registry } from "@phaselock/core";
import { createMemoryDb } from "@phaselock/db/testing";
import { createGatewayMetrics } from "@phaselock/gateway";
import { createApp as createPhonebankApp } from "@phaselock/phonebank";
import { createTokenServiceMetrics } from "@phaselock/token-service";
import { describe, expect, it } from "vitest";

const DASHBOARD = fileURLToPath(new URL("../../../infra/grafana/phaselock.json", import.meta.url));

/** Every series name the services' registries expose (histograms with their three suffixes). */
async function exposedNames(): Promise<Set<string>> {
  const registries: Registry[] = [];
  const gateway = createMetricsRegistry("gateway", { process: true });
  createGatewayMetrics(gateway, {
    feedAgeSeconds: () => 0,
    auditPending: () => 0,
    verifyCache: () => ({ hits: 0, misses: 0, size: 0 }),
    upstreamPool: () => undefined,
  });
  registries.push(gateway);
  const tokenService = createMetricsRegistry("token-service");
  const db = await createMemoryDb({ migrate: false }); // never queried: names only
  createTokenServiceMetrics(tokenService, {
    db: db.db,
    clock: { now: () => new Date() },
    auditPending: () => 0,
  });
  registries.push(tokenService);
  const phonebank = createMetricsRegistry("phonebank");
  createPhonebankApp({ secret: "s".repeat(40), metricsRegistry: phonebank });
  registries.push(phonebank);
  const names = new Set<string>();
  for (const r of registries) {
    for (const m of r.getMetricsAsArray()) {
      const { name, type } = m as unknown as { name: string; type: string };
      names.add(name);
      if (type === "histogram") for (const s of ["_bucket", "_sum", "_count"]) names.add(`${name}${s}`);
      if (type === "summary") for (const s of ["_sum", "_count"]) names.add(`${name}${s}`);
    }
  }
  await db.close();
  return names;
}

describe("infra/grafana/phaselock.json", () => {
  it("queries only metrics the services expose, and covers every gateway metric", async () => {
    const dash = JSON.parse(readFileSync(DASHBOARD, "utf8")) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const names = await exposedNames();
    const used = new Set<string>();
    for (const panel of dash.panels) {
      for (const { expr } of panel.targets) {
        const metrics = expr.match(/\bphaselock_[a-z0-9_]+/g) ?? [];
        expect(metrics.length, `${panel.title}: ${expr}`).toBeGreaterThan(0);
        for (const m of metrics) {
          expect(names.has(m), `${panel.title}: ${m} is not exposed by any service`).toBe(true);
          used.add(m.replace(/_(bucket|sum|count)$/, ""));
        }
      }
    }
    for (const name of names) {
      if (!name.startsWith("phaselock_gateway_") && !name.startsWith("phaselock_token_service_")) continue;
      if (/_(bucket|sum|count)$/.test(name)) continue;
      if (name === "phaselock_gateway_verify_cache_entries") continue; // a capacity figure, not a panel
      expect(used.has(name), `${name} has no panel`).toBe(true);
    }
  });
});
