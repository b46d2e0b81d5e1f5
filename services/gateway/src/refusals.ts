import type { DenyReason } from "@phaselock/core";
import { askHtml, escapeHtml, timeHtml, utcText } from "@phaselock/ui";
import { answerHeaders } from "./answer-headers.ts";
import { page, VOLUNTEER_CSP, wantsHtml } from "./html.ts";

/** What the gateway knows about a refused link, to explain it in plain words. Never the token. */
export interface RefusalContext {
  campaignName?: string | undefined;
  contestName?: string | undefined;
  phaseName?: string | undefined;
  /** when the link's phase ended (phase_closed) */
  endedAt?: Date | undefined;
  /** when the link's phase starts, still to come (phase_closed for a phase postponed before it began) */
  phaseStartsAt?: Date | undefined;
  /** when the link starts working (not_yet_valid) */
  startsAt?: Date | undefined;
  /** when the link stops working (expired) */
  expiresAt?: Date | undefined;
  retryAfterSeconds?: number | undefined;
  /** whom the campaign tells volunteers to ask (the campaign's `contact`) */
  contact?: string | undefined;
  /**
   * token_invalid for a session that ran past its own expiry (SESSION_TTL_SECONDS): it was real,
   * so it is told it timed out, not that its link "is not valid". Never for an unknown credential.
   */
  sessionTimedOut?: boolean | undefined;
  /** whose record quota is spent (quota_exceeded): the link's own, or its campaign's as a whole */
  quotaOf?: "link" | "campaign" | undefined;
}

/** Every refusal the gateway answers with. */
export type RefusalCode = DenyReason | "payload_too_large" | "request_timeout";

export interface Refusal {
  code: RefusalCode;
  status: number;
  message: string;
  context?: RefusalContext | undefined;
}

/** A message's pieces: text, and times (UTC text in JSON, the volunteer's local time on a page). */
type Part = string | Date;

interface RefusalSpec {
  /** the status of a refused `/pb` request or redemption */
  status: number;
  /** the landing page's: 410 when the link never will work again, 403 when it may later */
  landingStatus: number;
  /** the refusal page's heading */
  title: string | ((ctx: RefusalContext) => string);
  /** one sentence for API clients (JSON) and the page. Stable codes; messages may change. */
  message: string | ((ctx: RefusalContext) => readonly Part[]);
  /** the page's words for a volunteer, where the API message speaks of headers or endpoints */
  page?: string | ((ctx: RefusalContext) => readonly Part[] | undefined);
}

/** Every refusal code's answer, in one table: a new code does not compile until it has a row. */
export const REFUSALS = {
  token_missing: {
    status: 401,
    landingStatus: 401,
    title: "No link",
    message: "No session: open your link and press Start calling, or send Authorization: Bearer <session>.",
    page: "This device is not signed in to the phone bank. Open the link you were sent and press Start calling.",
  },
  token_invalid: {
    status: 401,
    landingStatus: 401,
    title: (ctx) => (ctx.sessionTimedOut ? "Your session has timed out" : "This link does not work"),
    message: (ctx) => [
      ctx.sessionTimedOut
        ? "This session has timed out. Open the link again to start a new one."
        : "This link is not valid. It may have been copied incompletely or altered.",
    ],
    page: (ctx) =>
      ctx.sessionTimedOut
        ? [
            "Your calling session on this device has timed out. To carry on, open the link you were sent again and press Start calling; if the link no longer works, ask for a new one.",
          ]
        : undefined,
  },
  session_required: {
    status: 401,
    landingStatus: 401,
    title: "Open your link first",
    message:
      "A link is not a session: open your link and press Start calling (API clients: POST /l/<link> to get a session).",
    page: "Open the link you were sent and press Start calling: that opens your calling session on this device.",
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
    message: (ctx) =>
      ctx.expiresAt ? ["This link expired at ", ctx.expiresAt, "."] : ["This link has expired."],
  },
  not_yet_valid: {
    status: 401,
    landingStatus: 403,
    title: "This link is not active yet",
    message: (ctx) =>
      ctx.startsAt ? ["This link starts working at ", ctx.startsAt, "."] : ["This link is not valid yet."],
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
        ? [
            `This link was for the ${ctx.phaseName} phase of ${ctx.contestName}`,
            ...(ctx.endedAt
              ? [", which ended at ", ctx.endedAt, "."]
              : ctx.phaseStartsAt
                ? [", which now starts at ", ctx.phaseStartsAt, "; the link works from then."]
                : [", which is not running now."]),
          ]
        : ["The contest phase this link was issued for is not running now."],
  },
  not_entitled: {
    status: 403,
    landingStatus: 403,
    title: "Not available to your campaign yet",
    message: (ctx) => [
      `${ctx.campaignName ?? "The campaign"} may not reach member data${ctx.phaseName ? ` in the ${ctx.phaseName} phase` : " in this phase"} at the moment. That may change: try your link again later.`,
    ],
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
    title: (ctx) =>
      ctx.quotaOf === "campaign"
        ? "Your campaign has reached its limit for now"
        : "You have seen enough records for now",
    message: (ctx) =>
      ctx.quotaOf === "campaign"
        ? [
            "Your campaign has reached the number of member records it may see for now, across all its volunteers. Your link still works: try again later.",
          ]
        : ["This link has reached the number of member records it may see for now."],
  },
  rate_limited: {
    status: 429,
    landingStatus: 429,
    title: "Slow down a little",
    message: (ctx) => {
      const s = ctx.retryAfterSeconds ?? 60;
      return [`Too many requests. Try again in ${s} ${s === 1 ? "second" : "seconds"}.`];
    },
  },
  unavailable: {
    status: 503,
    landingStatus: 503,
    title: "Temporarily unavailable",
    message: "The gateway cannot confirm access rules are current, so it refuses for now. Try again shortly.",
    page: "The phone bank cannot check your link right now, so it stays closed to be safe. Try again in a minute.",
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
    page: "What you sent was too large. Shorten your notes and try again.",
  },
  request_timeout: {
    status: 408,
    landingStatus: 408,
    title: "The request took too long",
    message: "The request body did not arrive in time. Check your connection and try again.",
    page: "What you sent did not arrive in time. Check your connection and try again.",
  },
} as const satisfies Record<RefusalCode, RefusalSpec>;

function messageParts(code: RefusalCode, ctx: RefusalContext): readonly Part[] {
  const { message } = REFUSALS[code] as RefusalSpec;
  return typeof message === "string" ? [message] : message(ctx);
}

/** The words for a volunteer: the page's own where the code has them, else the message. */
function volunteerParts(code: RefusalCode, ctx: RefusalContext): readonly Part[] {
  const { page } = REFUSALS[code] as RefusalSpec;
  const own = typeof page === "function" ? page(ctx) : page === undefined ? undefined : [page];
  return own ?? messageParts(code, ctx);
}

/** The refusal page's heading for `code` in `ctx`. */
export function refusalTitle(code: RefusalCode, ctx: RefusalContext = {}): string {
  const { title } = REFUSALS[code] as RefusalSpec;
  return typeof title === "string" ? title : title(ctx);
}

/** One sentence per code for API clients (JSON), times in UTC. Stable codes; messages may change. */
export function refusalMessage(code: RefusalCode, ctx: RefusalContext = {}): string {
  return plainText(messageParts(code, ctx));
}

/** Parts as plain text, times in UTC. */
const plainText = (parts: readonly Part[]): string =>
  parts.map((p) => (typeof p === "string" ? p : utcText(p))).join("");

/** `status`: a status other than the code's own (upstream_error's 504 for a timeout). */
export function refusal(code: RefusalCode, context?: RefusalContext, status?: number): Refusal {
  return { code, status: status ?? REFUSALS[code].status, message: refusalMessage(code, context), context };
}

/**
 * Landing page statuses: 410 when the link never will work again, 403 when it may later. A
 * phase_closed link whose phase is still to come (postponed before it began) may: 403.
 */
export function landingStatus(r: Pick<Refusal, "code" | "context">): number {
  if (r.code === "phase_closed" && r.context?.phaseStartsAt && !r.context.endedAt) return 403;
  return REFUSALS[r.code].landingStatus;
}

/** Refusals that pass: trying again later may work, so the page does not speak of mistakes. */
const TEMPORARY = new Set<number>([408, 413, 429, 502, 503, 504]);

/**
 * The refusal page a volunteer sees on a phone: what happened in plain words (times in their own
 * time zone), what the link was for when known, and whom to ask: the campaign's contact, else the
 * coordinator who sent the link. Never the token.
 */
export function refusalPage(r: Refusal): string {
  const ctx = r.context ?? {};
  const title = refusalTitle(r.code, ctx);
  const message = volunteerParts(r.code, ctx)
    .map((p) => (typeof p === "string" ? escapeHtml(p) : timeHtml(p)))
    .join("");
  const facts: string[] = [];
  if (ctx.campaignName) facts.push(`<dt>Campaign</dt><dd>${escapeHtml(ctx.campaignName)}</dd>`);
  if (ctx.contestName) facts.push(`<dt>Contest</dt><dd>${escapeHtml(ctx.contestName)}</dd>`);
  if (ctx.phaseName) facts.push(`<dt>Phase</dt><dd>${escapeHtml(ctx.phaseName)}</dd>`);
  const lead = TEMPORARY.has(r.status)
    ? "If this keeps happening, ask"
    : "If you think this is a mistake, ask";
  const body = [
    `<section class="refusal" aria-labelledby="refusal-title">`,
    `<h1 id="refusal-title">${escapeHtml(title)}</h1>`,
    `<p>${message}</p>`,
    `</section>`,
    ...(facts.length > 0 ? [`<dl>${facts.join("")}</dl>`] : []),
    askHtml(ctx.contact, lead),
    `<p class="note">Reference: ${escapeHtml(r.code)}</p>`,
  ];
  return page(title, body.join("\n"));
}

/**
 * The words for a volunteer as plain text, times in UTC: what the refusal page says, for a page of
 * the upstream (the phone bank's calling page) that shows a refusal it fetched as JSON.
 */
export function volunteerMessage(code: RefusalCode, ctx: RefusalContext = {}): string {
  return plainText(volunteerParts(code, ctx));
}

/** `{"error":{"code","message"}}`, exactly the contract's shape; never the token. */
export const refusalJson = (r: Refusal) => ({ error: { code: r.code, message: r.message } });

/**
 * Response header of a JSON refusal: the refusal page's words for a volunteer (`volunteerMessage`),
 * percent-encoded UTF-8, for a page of the upstream (the phone bank's calling page) that shows a
 * refusal it fetched as JSON. A header, so the body keeps the contract's exact shape.
 */
export const VOLUNTEER_MESSAGE_HEADER = "Phaselock-Volunteer-Message";
/** Beside it, the refusal page's heading (`refusalTitle`), encoded the same way. */
export const VOLUNTEER_TITLE_HEADER = "Phaselock-Volunteer-Title";

/** Headers of every page or refusal whose URL may hold a token. */
export const NO_STORE = {
  "Referrer-Policy": "no-referrer",
  "Cache-Control": "no-store",
  "X-Robots-Tag": "noindex",
} as const;
/** The gateway's pages' CSP: the shared stylesheet and local-time script, by hash; nothing else. */
export const CSP = VOLUNTEER_CSP;

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
  headers[VOLUNTEER_MESSAGE_HEADER] = encodeURIComponent(volunteerMessage(r.code, r.context));
  headers[VOLUNTEER_TITLE_HEADER] = encodeURIComponent(refusalTitle(r.code, r.context));
  return { status, headers, body: JSON.stringify(refusalJson(r)) };
}
