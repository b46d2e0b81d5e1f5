import { randomUUID } from "node:crypto";
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../context.ts";

// Ids callers may pass through for correlation: short and free of anything a log or header could
// misread. Anything else is replaced, not rejected.
const SANE_ID = /^[A-Za-z0-9._:-]{8,128}$/;

/** Sets `requestId` (the caller's `X-Request-Id` when sane, else a new one) and echoes it on every response. */
export const requestId = () =>
  createMiddleware<AppEnv>(async (c, next) => {
    const incoming = c.req.header("x-request-id");
    const id = incoming && SANE_ID.test(incoming) ? incoming : `req_${randomUUID()}`;
    c.set("requestId", id);
    await next();
    c.header("X-Request-Id", id);
  });
