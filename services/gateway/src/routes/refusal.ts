import type { Context } from "hono";
import type { GatewayEnv } from "../deps.ts";
import { type Refusal, renderRefusal } from "../refusals.ts";

/** Answers a refusal on Hono as JSON or, for a browser, as a page; the token is never echoed. */
export function sendRefusal(c: Context<GatewayEnv>, r: Refusal, status = r.status): Response {
  c.var.deps.metrics?.decision(r.code);
  const out = renderRefusal(r, c.req.header("accept"), c.get("requestId"), status);
  return c.body(out.body, out.status as 401, out.headers);
}
