import type { Hono } from "hono";
import type { PhonebankEnv } from "../deps.ts";

export function registerHealth(app: Hono<PhonebankEnv>) {
  app.get("/healthz", (c) => c.json({ ok: true }));
  // No database or store: its members are generated, so up is ready.
  app.get("/readyz", (c) => c.json({ ok: true }));
}
