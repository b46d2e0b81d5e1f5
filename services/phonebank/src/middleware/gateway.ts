import { safeEqual } from "@phaselock/core";
import type { MiddlewareHandler } from "hono";
import type { PhonebankEnv } from "../deps.ts";
import { jsonError } from "../errors.ts";

const SECRET_HEADER = "x-phaselock-gateway-secret";
const MAX_CONTEXT_LENGTH = 256;

/**
 * Answers 401 `gateway_required` unless the request carries the gateway's shared secret
 * (compared in constant time), except for the paths in `exempt`. Then reads the gateway's
 * `X-Phaselock-*` context headers into `c.var.gateway`. Nothing is logged.
 */
export function requireGateway(opts: {
  secret: string;
  exempt?: readonly string[];
}): MiddlewareHandler<PhonebankEnv> {
  if (opts.secret.length === 0) throw new Error("the gateway secret must not be empty");
  const { secret } = opts;
  const exempt = new Set(opts.exempt ?? []);
  return async (c, next) => {
    if (exempt.has(c.req.path)) return next();
    const given = c.req.header(SECRET_HEADER);
    if (given === undefined || !safeEqual(given, secret)) {
      return jsonError(
        c,
        401,
        "gateway_required",
        "This service only answers requests that come through the Phaselock gateway.",
      );
    }
    c.set("gateway", {
      campaign: contextHeader(c.req.header("x-phaselock-campaign")),
      volunteer: contextHeader(c.req.header("x-phaselock-volunteer")),
      link: contextHeader(c.req.header("x-phaselock-link")),
      scopes: (c.req.header("x-phaselock-scopes") ?? "").split(" ").filter((s) => s !== ""),
      contact: contactHeader(c.req.header("x-phaselock-contact")),
    });
    return next();
  };
}

function contextHeader(value: string | undefined): string | null {
  if (value === undefined) return null;
  const v = value.trim();
  return v === "" || v.length > MAX_CONTEXT_LENGTH ? null : v;
}

/** The campaign's contact: percent-encoded UTF-8 display text, at most 200 characters, one line. */
export function contactHeader(value: string | undefined): string | null {
  if (value === undefined || value.length > 200 * 12) return null;
  let text: string;
  try {
    text = decodeURIComponent(value).trim();
  } catch {
    return null;
  }
  if (text === "" || text.length > 200 || /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u.test(text)) return null;
  return text;
}
