import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";

/** The phone bank's error codes. */
export type PhonebankErrorCode =
  | "gateway_required"
  | "campaign_required"
  | "validation"
  | "not_found"
  | "conflict"
  | "payload_too_large"
  | "internal";

/** `{"error":{"code","message"}}`, the shape the gateway's refusals use too. */
export const jsonError = (
  c: Context,
  status: ContentfulStatusCode,
  code: PhonebankErrorCode,
  message: string,
) => c.json({ error: { code, message } }, status);
