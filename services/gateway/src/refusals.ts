import { type DenyReason, errorStatus } from "@phaselock/core";
import { escapeHtml, page, wantsHtml } from "./html.ts";

/** What the gateway knows about a refused link, to explain it in plain words. Never the token. */
export interface RefusalContext {
  campaignName?: string | undefined;
  contestName?: string | undefined;
  phaseName?: string | undefined;
  /** when the link's phase ended (phase_closed) */
  endedAt?: Date | undefined;
  /** when the link starts working (not_yet_valid) */
  startsAt?: Date | undefined;
  retryAfterSeconds?: number | undefined;
}

export interface Refusal {
  code: DenyReason | "payload_too_large";
  status: number;
  message: string;
  context?: RefusalContext | undefined;
}

const ASK_COORDINATOR = "If you think this is a mistake, ask the coordinator who sent you the link.";

const fmt = (d: Date): string => d.toUTCString().replace(" GMT", " UTC");

/** One sentence per code for API clients (JSON). Stable codes; messages may change. */
export function refusalMessage(code: Refusal["code"], ctx: RefusalContext = {}): string {
  switch (code) {
    case "token_missing":
      return "No link token: open your link again, or send Authorization: Bearer <link token>.";
    case "token_invalid":
      return "This link is not valid. It may have been copied incompletely or altered.";
    case "expired":
      return "This link has expired.";
    case "not_yet_valid":
      return ctx.startsAt
        ? `This link starts working at ${fmt(ctx.startsAt)}.`
        : "This link is not valid yet.";
    case "revoked":
      return "This link has been switched off by an administrator or coordinator.";
    case "phase_closed":
      return ctx.phaseName && ctx.contestName
        ? `This link was for the ${ctx.phaseName} phase of ${ctx.contestName}${ctx.endedAt ? `, which ended at ${fmt(ctx.endedAt)}` : ", which is not running now"}.`
        : "The contest phase this link was issued for is not running now.";
    case "not_entitled":
      return "The campaign is not entitled to member data in this phase.";
    case "scope_denied":
      return "This link does not allow that action.";
    case "uses_exhausted":
      return "This link has been used the maximum number of times.";
    case "suspended":
      return "This link was suspended because it was opened on too many devices.";
    case "quota_exceeded":
      return "This link has reached the number of member records it may see for now.";
    case "rate_limited":
      return `Too many requests. Try again in ${ctx.retryAfterSeconds ?? 60} seconds.`;
    case "unavailable":
      return "The gateway cannot confirm access rules are current, so it refuses for now. Try again shortly.";
    case "upstream_error":
      return "The phone bank did not answer. Try again shortly.";
    case "payload_too_large":
      return "The request body is too large.";
  }
}

export function refusal(code: Refusal["code"], context?: RefusalContext, status?: number): Refusal {
  return { code, status: status ?? errorStatus[code], message: refusalMessage(code, context), context };
}

/** Landing page statuses: 410 when the link never will work again, 403 when it may later. */
export function landingStatus(code: Refusal["code"]): number {
  switch (code) {
    case "expired":
    case "phase_closed":
    case "revoked":
    case "uses_exhausted":
    case "suspended":
      return 410;
    case "not_yet_valid":
    case "not_entitled":
      return 403;
    case "token_invalid":
    case "token_missing":
      return 401;
    default:
      return errorStatus[code];
  }
}

const TITLES: Record<Refusal["code"], string> = {
  token_missing: "No link",
  token_invalid: "This link does not work",
  expired: "This link has expired",
  not_yet_valid: "This link is not active yet",
  revoked: "This link has been switched off",
  phase_closed: "This link is from a phase that is over",
  not_entitled: "Not available to your campaign yet",
  scope_denied: "Not allowed with this link",
  uses_exhausted: "This link has been used up",
  suspended: "This link has been suspended",
  quota_exceeded: "You have seen enough records for now",
  rate_limited: "Slow down a little",
  unavailable: "Temporarily unavailable",
  upstream_error: "The phone bank is not answering",
  payload_too_large: "Too much data",
};

/** The refusal page a volunteer sees on a phone: what happened, and whom to ask. */
export function refusalPage(r: Refusal): string {
  const lines = [`<h1>${escapeHtml(TITLES[r.code])}</h1>`, `<p>${escapeHtml(r.message)}</p>`];
  if (r.context?.campaignName)
    lines.push(`<p class="note">Campaign: ${escapeHtml(r.context.campaignName)}</p>`);
  lines.push(`<p class="note">${escapeHtml(ASK_COORDINATOR)}</p>`);
  lines.push(`<p class="note">Reference: ${escapeHtml(r.code)}</p>`);
  return page(TITLES[r.code], lines.join("\n"));
}

export const refusalJson = (r: Refusal) => ({ error: { code: r.code, message: r.message } });

/** Headers of every page or refusal whose URL may hold a token. */
export const NO_STORE = {
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
  "X-Robots-Tag": "noindex",
} as const;
export const CSP =
  "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'";

/** A refusal ready to send on any transport. */
export interface RenderedRefusal {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * A refusal as JSON or, for a browser (`accept`), as a page; the token is never echoed. 401 carries
 * `WWW-Authenticate`, 429 and 503 carry `Retry-After`.
 */
export function renderRefusal(
  r: Refusal,
  accept: string | undefined,
  requestId: string,
  status = r.status,
): RenderedRefusal {
  const headers: Record<string, string> = { ...NO_STORE, "X-Request-Id": requestId };
  if (status === 401) headers["WWW-Authenticate"] = `Bearer realm="phaselock", error="invalid_token"`;
  if (r.code === "rate_limited" || r.code === "quota_exceeded" || r.code === "unavailable") {
    headers["Retry-After"] = String(r.context?.retryAfterSeconds ?? (r.code === "unavailable" ? 5 : 60));
  }
  if (wantsHtml(accept)) {
    headers["Content-Security-Policy"] = CSP;
    headers["Content-Type"] = "text/html; charset=UTF-8";
    return { status, headers, body: refusalPage(r) };
  }
  headers["Content-Type"] = "application/json";
  return { status, headers, body: JSON.stringify(refusalJson(r)) };
}
