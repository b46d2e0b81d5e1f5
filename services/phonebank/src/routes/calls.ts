import type { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { z } from "zod";
import { OUTCOMES } from "../calls.ts";
import type { PhonebankEnv } from "../deps.ts";
import { jsonError } from "../errors.ts";

export const outcomeBody = z.strictObject({
  outcome: z.enum(OUTCOMES),
  notes: z.string().max(1000).optional(),
});

const MAX_BODY_BYTES = 16 * 1024;

export function registerCalls(app: Hono<PhonebankEnv>) {
  app.get("/calls/next", (c) => {
    const { campaign, volunteer, link } = c.var.gateway;
    if (!campaign) return jsonError(c, 400, "campaign_required", "X-Phaselock-Campaign is missing.");
    const { call, member } = c.var.deps.calls.next({ campaign, volunteer, link }, c.var.deps.clock.now());
    return c.json({ call: { id: call.id, assignedAt: call.assignedAt.toISOString(), member } });
  });

  app.post(
    "/calls/:id/outcome",
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: (c) => jsonError(c, 413, "payload_too_large", `The body is over ${MAX_BODY_BYTES} bytes.`),
    }),
    async (c) => {
      const { campaign, volunteer } = c.var.gateway;
      if (!campaign) return jsonError(c, 400, "campaign_required", "X-Phaselock-Campaign is missing.");

      let json: unknown;
      try {
        json = await c.req.json();
      } catch {
        return jsonError(c, 400, "validation", "The body must be JSON.");
      }
      const parsed = outcomeBody.safeParse(json);
      if (!parsed.success) {
        const where = parsed.error.issues.map((i) => i.path.join(".") || "(body)").join(", ");
        return jsonError(c, 400, "validation", `Invalid outcome: check ${where}.`);
      }

      const notes = parsed.data.notes?.trim() || null;
      const result = c.var.deps.calls.record(
        c.req.param("id"),
        campaign,
        { outcome: parsed.data.outcome, notes, volunteer },
        c.var.deps.clock.now(),
      );
      if (!result.ok) {
        return result.reason === "not_found"
          ? jsonError(c, 404, "not_found", "No call of this campaign has this id.")
          : jsonError(c, 409, "conflict", "This call's outcome is already recorded.");
      }
      const { call } = result;
      return c.json(
        {
          call: {
            id: call.id,
            memberId: call.memberId,
            outcome: call.outcome!.outcome,
            notes: call.outcome!.notes,
            recordedAt: call.outcome!.recordedAt.toISOString(),
          },
        },
        201,
      );
    },
  );
}
