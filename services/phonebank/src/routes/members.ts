import type { Hono } from "hono";
import type { PhonebankEnv } from "../deps.ts";
import { jsonError } from "../errors.ts";
import type { MemberDirectory } from "../members.ts";

const BATCH = 500;

export function registerMembers(app: Hono<PhonebankEnv>) {
  // Must come before `/members/:id`: Hono tries handlers in the order they were registered.
  app.get("/members/export", (c) => {
    c.header("content-type", "application/x-ndjson; charset=utf-8");
    return c.body(exportStream(c.var.deps.members));
  });

  app.get("/members/:id", (c) => {
    const member = c.var.deps.members.get(c.req.param("id"));
    if (!member) return jsonError(c, 404, "not_found", "No member has this id.");
    return c.json(member);
  });
}

/** Every member as one JSON object per line, generated a batch at a time as the reader pulls. */
export function exportStream(members: MemberDirectory): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let next = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      const end = Math.min(next + BATCH, members.count);
      let chunk = "";
      for (; next < end; next++) chunk += `${JSON.stringify(members.at(next))}\n`;
      controller.enqueue(encoder.encode(chunk));
      if (next >= members.count) controller.close();
    },
  });
}
