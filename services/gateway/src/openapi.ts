import { errorStatus } from "@phaselock/core";

const refusal = (description: string) => ({
  description,
  content: {
    "application/json": { schema: { $ref: "#/components/schemas/Refusal" } },
    "text/html": {
      schema: { type: "string", description: "A plain page for a volunteer (Accept: text/html)" },
    },
  },
});

const REFUSAL_CODES = [
  "token_missing",
  "session_required",
  "cross_site",
  "token_invalid",
  "expired",
  "not_yet_valid",
  "revoked",
  "suspended",
  "phase_closed",
  "not_entitled",
  "scope_denied",
  "uses_exhausted",
  "quota_exceeded",
  "rate_limited",
  "unavailable",
  "upstream_error",
  "payload_too_large",
  "request_timeout",
] as const;

const token = {
  name: "token",
  in: "path",
  required: true,
  description: "The link token (compact JWS) or the short link's code. Never logged or echoed.",
  schema: { type: "string" },
};

/** The gateway's OpenAPI document: its few routes, and every refusal code with its status. */
export const gatewayOpenApi = {
  openapi: "3.1.0",
  info: {
    title: "Phaselock gateway",
    version: "0.1.0",
    description:
      "Volunteers' entry point. Every request to /pb/* is checked, in order: credential present; a session, not a link (session_required); the session and its link's signature, alg, typ, iss, aud, kid (unknown or ended session: token_invalid); exp; nbf; state current (else 503); revocation and suspension; current phase; route scope; entitlement; rate limits; record quota.\n\nRefusal statuses: " +
      REFUSAL_CODES.map((c) => `\`${c}\` ${errorStatus[c]}`).join(", "),
  },
  components: {
    securitySchemes: {
      session: { type: "apiKey", in: "cookie", name: "pl_session" },
      bearer: {
        type: "http",
        scheme: "bearer",
        description:
          "The session credential (pls_…) from a redemption; a link token is refused session_required",
      },
    },
    schemas: {
      Refusal: {
        type: "object",
        required: ["error"],
        properties: {
          error: {
            type: "object",
            required: ["code", "message"],
            properties: {
              code: { type: "string", enum: [...REFUSAL_CODES] },
              message: {
                type: "string",
                description:
                  "One sentence for API clients. The refusal page's words for a volunteer (times in UTC) are in the `Phaselock-Volunteer-Message` response header and its heading in `Phaselock-Volunteer-Title`, both percent-encoded UTF-8",
              },
            },
          },
        },
      },
    },
  },
  paths: {
    "/l/{token}": {
      get: {
        summary: "Landing page for a link (consumes no use)",
        parameters: [token],
        responses: {
          200: {
            description: "Names the campaign and phase; a Start calling button posts back",
            content: { "text/html": {} },
          },
          401: refusal("token_invalid"),
          403: refusal(
            "not_yet_valid or not_entitled, or phase_closed for a phase postponed before it began: the link may work later",
          ),
          410: refusal("expired, phase_closed, revoked, uses_exhausted or suspended: it never will again"),
          503: refusal(
            "unavailable: the gateway cannot confirm its state is current, or its database is unreachable",
          ),
        },
      },
      post: {
        summary:
          "Redeem a link: opens a session and counts one use (a device re-opening its live session counts none)",
        parameters: [token],
        responses: {
          201: {
            description: "Accept: application/json. The session cookie is set as well",
            content: {
              "application/json": {
                schema: {
                  type: "object",
                  required: ["session", "expiresAt"],
                  properties: {
                    session: { type: "string", description: "the session credential (pls_…)" },
                    expiresAt: { type: "string", format: "date-time" },
                  },
                },
              },
            },
          },
          303: { description: "Session cookie set (HttpOnly, SameSite=Strict, Path=/pb); Location: /pb/" },
          401: refusal("token_missing, token_invalid, expired, not_yet_valid"),
          403: refusal(
            "cross_site (posted from another site), revoked, suspended, phase_closed, not_entitled, uses_exhausted",
          ),
          429: refusal(
            "rate_limited, with Retry-After: a redemption counts against its link's and campaign's requests per minute, as a /pb request does",
          ),
          503: refusal(
            "unavailable: the gateway cannot confirm its state is current, its database is unreachable, or the audit trail cannot be written",
          ),
        },
      },
    },
    "/pb/_phaselock/session/end": {
      post: {
        summary: "End the caller's session on every gateway (never proxied)",
        security: [{ session: [] }, { bearer: [] }],
        responses: {
          204: { description: "Ended (bearer or Accept: application/json); the cookie is cleared" },
          303: { description: "Ended; Location: /signed-out; the cookie is cleared" },
          401: refusal("token_missing, session_required (a link token, not a session), token_invalid"),
          403: refusal(
            "cross_site: a cookie-borne request from another site or a sibling origin (a foreign Origin, Sec-Fetch-Site: cross-site)",
          ),
          503: refusal("unavailable: the session store is unreachable"),
        },
      },
    },
    "/signed-out": {
      get: {
        summary: "The signed-out page",
        responses: { 200: { description: "HTML", content: { "text/html": {} } } },
      },
    },
    "/pb": {
      get: {
        summary: "Redirects to /pb/ (any method)",
        responses: { 308: { description: "Location: /pb/" } },
      },
    },
    "/pb/{path}": {
      description: "Proxied to the upstream without the /pb prefix, after every check",
      parameters: [{ name: "path", in: "path", required: true, schema: { type: "string" } }],
      ...Object.fromEntries(
        ["get", "head", "post", "put", "patch", "delete", "options"].map((m) => [
          m,
          {
            summary: "Checked proxy to the phone bank",
            security: [{ session: [] }, { bearer: [] }],
            responses: {
              "2XX": { description: "The upstream's answer, minimised to the route's allow-list" },
              default: {
                description:
                  "Any other status the upstream answered (e.g. 404 for an unknown member), its body minimised likewise",
              },
              401: refusal(
                "token_missing, session_required (a link token), token_invalid, expired, not_yet_valid",
              ),
              403: refusal(
                "revoked, suspended, phase_closed, scope_denied (also any route or method the upstream route table does not map, OPTIONS included), not_entitled; cross_site (a cookie-borne change, any method but GET, HEAD and OPTIONS, from another site or a sibling origin)",
              ),
              408: refusal("request_timeout: the request body did not arrive within BODY_TIMEOUT_MS"),
              413: refusal("payload_too_large"),
              429: refusal(
                "rate_limited (also past MAX_CONCURRENT_PER_LINK requests in flight) or quota_exceeded, with Retry-After",
              ),
              502: refusal(
                "upstream_error: the upstream could not be reached, answered 5xx, refused the gateway's own credentials (401, 407: PHONEBANK_SECRET), or answered a minimised route's success with a body that is not JSON",
              ),
              503: refusal("unavailable"),
              504: refusal("upstream_error (timeout)"),
            },
          },
        ]),
      ),
    },
    "/healthz": { get: { summary: "The process is up", responses: { 200: { description: "ok" } } } },
    "/readyz": {
      get: {
        summary: "Database and store reachable, policy state current, audit writable",
        responses: { 200: { description: "ready" }, 503: { description: "not ready" } },
      },
    },
    "/openapi.json": {
      get: { summary: "This document", responses: { 200: { description: "OpenAPI 3.1" } } },
    },
    "/metrics": {
      get: {
        summary:
          "Prometheus metrics (decisions by code, latency, revocation lag, feed staleness, audit queue)",
        description:
          "Not proxied, not audited. With METRICS_TOKEN set, requires `Authorization: Bearer <METRICS_TOKEN>`.",
        responses: {
          200: { description: "Prometheus text exposition format" },
          401: { description: "`unauthorized` (problem+json): METRICS_TOKEN is set and was not presented" },
        },
      },
    },
  },
} as const;
