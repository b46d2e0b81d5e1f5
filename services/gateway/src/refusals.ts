import type { DenyReason } from "@phaselock/core";
import { answerHeaders } from "./answer-headers.ts";
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

/** Every refusal the gateway answers with. */
export type RefusalCode = DenyReason | "payload_too_large" | "request_timeout";

export interface Refusal {
  code: RefusalCode;
  status: number;
  message: string;
  context?: RefusalContext | undefined;
}

const ASK_COORDINATOR = "If you think this is a mistake, ask the coordinator who sent you the link.";

const fmt = (d: Date): string => d.toUTCString().replace(" GMT", " UTC");

interface RefusalSpec {
  /** the status of a refused `/pb` request or redemption */
  status: number;
  /** the landing page's: 410 when the link never will work again, 403 when it may later */
  landingStatus: number;
  /** the refusal page's heading */
  title: string;
  /** one sentence for API clients (JSON) and the page. Stable codes; messages may change. */
  message: string | ((ctx: RefusalContext) => string);
}

/** Every refusal code's answer, in one table: a new code does not compile until it has a row. */
export const REFUSALS = {
  token_missing: {
    status: 401,
    landingStatus: 401,
    title: "No link",
    message: "No link token: open your link again, or send Authorization: Bearer <link token>.",
  },
  token_invalid: {
    status: 401,
    landingStatus: 401,
    title: "This link does not work",
    message: "This link is not valid. It may have been copied incompletely or altered.",
  },
  session_required: {
    status: 401,
    landingStatus: 401,
    title: "Open your link first",
    message:
      "A link is not a session: open your link and press Start calling (API clients: POST /l/<link> to get a session).",
  },
  cross_site: {
    status: 403,
    landingStatus: 403,
    title: "Open your link directly",
    message:
      "This link can only be opened from its own page: open the link you were sent and press Start calling.",
  },
  expired: {
    status: 401,
    landingStatus: 410,
    title: "This link has expired",
    message: "This link has expired.",
  },
  not_yet_valid: {
    status: 401,
    landingStatus: 403,
    title: "This link is not active yet",
    message: (ctx) =>
      ctx.startsAt ? `This link starts working at ${fmt(ctx.startsAt)}.` : "This link is not valid yet.",
  },
  revoked: {
    status: 403,
    landingStatus: 410,
    title: "This link has been switched off",
    message: "This link has been switched off by an administrator or coordinator.",
  },
  phase_closed: {
    status: 403,
    landingStatus: 410,
    title: "This link is from a phase that is over",
    message: (ctx) =>
      ctx.phaseName && ctx.contestName
        ? `This link was for the ${ctx.phaseName} phase of ${ctx.contestName}${ctx.endedAt ? `, which ended at ${fmt(ctx.endedAt)}` : ", which is not running now"}.`
        : "The contest phase this link was issued for is not running now.",
  },
  not_entitled: {
    status: 403,
    landingStatus: 403,
    title: "Not available to your campaign yet",
    message: "The campaign is not entitled to member data in this phase.",
  },
  scope_denied: {
    status: 403,
    landingStatus: 403,
    title: "Not allowed with this link",
    message: "This link does not allow that action.",
  },
  uses_exhausted: {
    status: 403,
    landingStatus: 410,
    title: "This link has been used up",
    message: "This link has been used the maximum number of times.",
  },
  suspended: {
    status: 403,
    landingStatus: 410,
    title: "This link has been suspended",
    message: "This link was suspended because it was opened on too many devices.",
  },
  quota_exceeded: {
    status: 429,
    landingStatus: 429,
    title: "You have seen enough records for now",
    message: "This link has reached the number of member records it may see for now.",
  },
  rate_limited: {
    status: 429,
    landingStatus: 429,
    title: "Slow down a little",
    message: (ctx) => `Too many requests. Try again in ${ctx.retryAfterSeconds ?? 60} seconds.`,
  },
  unavailable: {
    status: 503,
    landingStatus: 503,
    title: "Temporarily unavailable",
    message: "The gateway cannot confirm access rules are current, so it refuses for now. Try again shortly.",
  },
  upstream_error: {
    status: 502,
    landingStatus: 502,
    title: "The phone bank is not answering",
    message: "The phone bank did not answer. Try again shortly.",
  },
  payload_too_large: {
    status: 413,
    landingStatus: 413,
    title: "Too much data",
    message: "The request body is too large.",
  },
  request_timeout: {
    status: 408,
    landingStatus: 408,
    title: "The request took too long",
    message: "The request body did not arrive in time. Check your connection and try again.",
  },
} as const satisfies Record<RefusalCode, RefusalSpec>;

/** One sentence per code for API clients (JSON). Stable codes; messages may change. */
export function refusalMessage(code: RefusalCode, ctx: RefusalContext = {}): string {
  const { message } = REFUSALS[code] as RefusalSpec;
  return typeof message === "string" ? message : message(ctx);
}

/** `status`: a status other than the code's own (upstream_error's 504 for a timeout). */
export function refusal(code: RefusalCode, context?: RefusalContext, status?: number): Refusal {
  return { code, status: status ?? REFUSALS[code].status, message: refusalMessage(code, context), context };
}

/** Landing page statuses: 410 when the link never will work again, 403 when it may later. */
export function landingStatus(code: RefusalCode): number {
  return REFUSALS[code].landingStatus;
}

/** The refusal page a volunteer sees on a phone: what happened, and whom to ask. */
export function refusalPage(r: Refusal): string {
  const lines = [`<h1>${escapeHtml(REFUSALS[r.code].title)}</h1>`, `<p>${escapeHtml(r.message)}</p>`];
  if (r.context?.campaignName)
    lines.push(`<p class="note">Campaign: ${escapeHtml(r.context.campaignName)}</p>`);
  lines.push(`<p class="note">${escapeHtml(ASK_COORDINATOR)}</p>`);
  lines.push(`<p class="note">Reference: ${escapeHtml(r.code)}</p>`);
  return page(REFUSALS[r.code].title, lines.join("\n"));
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
  const headers: Record<string, string> = { ...NO_STORE };
  for (const [name, value] of answerHeaders(requestId)) headers[name] = value;
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
