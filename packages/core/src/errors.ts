/**
 * Every error code the public contract names, in one closed union, with one exhaustive
 * code -> HTTP status map. Token-service problems and gateway refusals share the table.
 */
export const errorStatus = {
  // token service (problem+json)
  validation: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  conflict: 409,
  scope_not_issuable: 422,
  payload_too_large: 413,
  request_timeout: 408,
  unsupported_media_type: 415,
  not_acceptable: 406,
  internal: 500,
  // shared by both
  phase_closed: 403, // gateway; issuance answers 409 (see issuanceStatus)
  not_entitled: 403,
  // gateway refusals
  token_missing: 401,
  token_invalid: 401,
  session_required: 401,
  cross_site: 403,
  expired: 401,
  not_yet_valid: 401,
  revoked: 403,
  scope_denied: 403,
  uses_exhausted: 403,
  suspended: 403,
  quota_exceeded: 429,
  rate_limited: 429,
  unavailable: 503,
  upstream_error: 502,
} as const satisfies Record<string, number>;

export type ErrorCode = keyof typeof errorStatus;

/** Refusal codes a gateway check can produce. */
export type DenyReason =
  | "token_missing"
  | "token_invalid"
  | "session_required"
  | "cross_site"
  | "expired"
  | "not_yet_valid"
  | "revoked"
  | "phase_closed"
  | "not_entitled"
  | "scope_denied"
  | "uses_exhausted"
  | "suspended"
  | "quota_exceeded"
  | "rate_limited"
  | "unavailable"
  | "upstream_error";

/** An expected failure with a stable code. Messages never contain a token or a key. */
export class PhaselockError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;
  constructor(
    code: ErrorCode,
    message: string,
    opts: { status?: number; details?: Record<string, unknown>; cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = "PhaselockError";
    this.code = code;
    this.status = opts.status ?? errorStatus[code];
    this.details = opts.details;
  }
}
