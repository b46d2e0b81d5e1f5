import type { z } from "@hono/zod-openapi";
import { type ErrorCode, errorStatus, PhaselockError } from "@phaselock/core";
import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { AppEnv } from "./context.ts";
import { consoleLogger } from "./logger.ts";

export { consoleLogger, type Logger } from "./logger.ts";

/** Problem codes the token service answers with. */
export type ProblemCode = Extract<
  ErrorCode,
  | "validation"
  | "unauthorized"
  | "forbidden"
  | "not_found"
  | "conflict"
  | "scope_not_issuable"
  | "payload_too_large"
  | "unsupported_media_type"
  | "not_acceptable"
  | "internal"
  | "phase_closed"
  | "not_entitled"
  | "unavailable"
>;

const titles: Record<ProblemCode, string> = {
  validation: "The request is not valid",
  unauthorized: "Authentication is required",
  forbidden: "Not allowed for this credential",
  not_found: "Not found",
  conflict: "Conflicts with the current state",
  scope_not_issuable: "Scope cannot be issued through a link",
  payload_too_large: "Request body too large",
  unsupported_media_type: "Unsupported media type",
  not_acceptable: "Cannot answer in the requested media type",
  internal: "Internal error",
  phase_closed: "The phase is closed",
  not_entitled: "The campaign is not entitled",
  unavailable: "Service unavailable",
};

/**
 * Issuance answers `phase_closed` with 409 (the request conflicts with the timeline), while the
 * gateway's refusal of the same name is a 403; the core table holds the gateway's.
 */
export const issuanceStatus = (code: ProblemCode): number =>
  code === "phase_closed" ? 409 : errorStatus[code];

/** One validation issue, RFC 9457 style: where (`in` + JSON pointer) and what. */
export interface ProblemIssue {
  in: "body" | "query" | "path" | "header";
  pointer: string;
  detail: string;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ProblemCode;
  requestId: string;
  errors?: ProblemIssue[];
}

export const problemType = (code: ProblemCode): string => `urn:phaselock:problem:${code}`;

/** Throws a {@link PhaselockError}: the one way handlers refuse a request. */
export function fail(
  code: ProblemCode,
  detail: string,
  opts: { status?: number; issues?: ProblemIssue[] } = {},
): never {
  throw new PhaselockError(code, detail, {
    status: opts.status ?? issuanceStatus(code),
    ...(opts.issues ? { details: { issues: opts.issues } } : {}),
  });
}

export function problemResponse(
  c: Context<AppEnv>,
  code: ProblemCode,
  detail: string,
  opts: { status?: number; issues?: ProblemIssue[] } = {},
): Response {
  const status = opts.status ?? issuanceStatus(code);
  const requestId = c.get("requestId") ?? "";
  const body: Problem = {
    type: problemType(code),
    title: titles[code],
    status,
    detail,
    code,
    requestId,
    ...(opts.issues && opts.issues.length > 0 ? { errors: opts.issues } : {}),
  };
  const headers: Record<string, string> = {
    "Content-Type": "application/problem+json",
    "Cache-Control": "no-store",
  };
  if (requestId) headers["X-Request-Id"] = requestId;
  if (code === "unauthorized") headers["WWW-Authenticate"] = 'Bearer realm="phaselock"';
  return c.body(JSON.stringify(body), status as ContentfulStatusCode, headers);
}

const toPointer = (path: readonly PropertyKey[]): string =>
  `#/${path.map((p) => String(p).replaceAll("~", "~0").replaceAll("/", "~1")).join("/")}`;

const targetName = (target: string): ProblemIssue["in"] =>
  target === "json" ? "body" : target === "param" ? "path" : target === "query" ? "query" : "header";

/** Turns zod issues into problem issues. Zod messages never quote the offending value. */
export function zodIssues(target: string, error: z.ZodError): ProblemIssue[] {
  return error.issues.slice(0, 50).map((i) => ({
    in: targetName(target),
    pointer: toPointer(i.path),
    detail: i.message,
  }));
}

/** `defaultHook` for every OpenAPI route: a failed zod check is a 400 `validation` problem. */
export const validationHook = (
  result:
    | { target: string; success: true; data: unknown }
    | { target: string; success: false; error: z.ZodError },
  c: Context<AppEnv>,
): Response | undefined => {
  if (result.success) return undefined;
  return problemResponse(c, "validation", "The request did not pass validation; see `errors`.", {
    issues: zodIssues(result.target, result.error),
  });
};

const httpExceptionCode = (status: number): ProblemCode => {
  switch (status) {
    case 400:
      return "validation";
    case 401:
      return "unauthorized";
    case 403:
      return "forbidden";
    case 404:
      return "not_found";
    case 406:
      return "not_acceptable";
    case 413:
      return "payload_too_large";
    case 415:
      return "unsupported_media_type";
    default:
      return "internal";
  }
};

/** The one error handler: every failure leaves as problem+json with a stable `code`. */
export const onError: ErrorHandler<AppEnv> = (err, c) => {
  if (err instanceof PhaselockError) {
    const code = (err.code in titles ? err.code : "internal") as ProblemCode;
    const issues = err.details?.issues as ProblemIssue[] | undefined;
    return problemResponse(c, code, err.message, { status: err.status, ...(issues ? { issues } : {}) });
  }
  if (err instanceof HTTPException) {
    const code = httpExceptionCode(err.status);
    // Hono's own messages ("Malformed JSON in request body", "Payload Too Large") hold no input.
    const detail = code === "internal" ? "Unexpected error." : err.message || titles[code];
    return problemResponse(c, code, detail, { status: code === "internal" ? 500 : err.status });
  }
  const logger = c.get("deps")?.logger ?? consoleLogger;
  logger.error("unhandled error", {
    requestId: c.get("requestId"),
    method: c.req.method,
    path: c.req.routePath,
    error: err instanceof Error ? `${err.name}: ${err.message}` : String(err),
  });
  return problemResponse(c, "internal", "Unexpected error; quote the requestId when reporting it.");
};

export const notFound: NotFoundHandler<AppEnv> = (c) => problemResponse(c, "not_found", "No such route.");
