import type { z } from "@hono/zod-openapi";
import { CheckpointFolderError, CheckpointRefusedError } from "@phaselock/audit";
import { type ErrorCode, errorText, PhaselockError } from "@phaselock/core";
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

export interface ProblemEntry {
  status: ContentfulStatusCode;
  title: string;
  /** What the OpenAPI document says of the status when a route gives no description of its own. */
  summary?: string;
}

/**
 * Every problem the token service answers: its status and title, in one exhaustive table. The
 * first code listed for a status is the one the OpenAPI document names for it; the order is the
 * docs page's.
 */
export const PROBLEMS = {
  validation: { status: 400, title: "The request is not valid", summary: "the request is malformed" },
  unauthorized: {
    status: 401,
    title: "Authentication is required",
    summary: "no or unknown bearer credential",
  },
  forbidden: {
    status: 403,
    title: "Not allowed for this credential",
    summary: "the credential's role or campaign does not allow this",
  },
  not_found: { status: 404, title: "Not found" },
  conflict: { status: 409, title: "Conflicts with the current state" },
  scope_not_issuable: { status: 422, title: "Scope cannot be issued through a link" },
  // 409 here (the request conflicts with the timeline); the gateway's refusal of the name is a 403.
  phase_closed: { status: 409, title: "The phase is closed" },
  not_entitled: { status: 403, title: "The campaign is not entitled" },
  payload_too_large: { status: 413, title: "Request body too large" },
  unsupported_media_type: { status: 415, title: "Unsupported media type" },
  not_acceptable: { status: 406, title: "Cannot answer in the requested media type" },
  unavailable: {
    status: 503,
    title: "Service unavailable",
    summary: "the database is unreachable or the audit trail cannot be written; try again shortly",
  },
  internal: { status: 500, title: "Internal error" },
} as const satisfies Record<ProblemCode, ProblemEntry>;

/** Problem codes in table order (the docs page lists them so). */
export const PROBLEM_CODES = Object.keys(PROBLEMS) as readonly ProblemCode[];

const isProblemCode = (code: string): code is ProblemCode => Object.hasOwn(PROBLEMS, code);

/** One validation issue, RFC 9457 style: where (`in` + JSON pointer) and what. */
export interface ProblemIssue {
  in: "body" | "query" | "path" | "header";
  pointer: string;
  detail: string;
  /** The line of an uploaded CSV file the issue is on (the header being row 1). */
  row?: number;
  /** The 0-based position in `volunteers` of the volunteer the issue is about (JSON batches). */
  index?: number;
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
export function fail(code: ProblemCode, detail: string, opts: { issues?: ProblemIssue[] } = {}): never {
  throw new PhaselockError(code, detail, {
    status: PROBLEMS[code].status,
    ...(opts.issues ? { details: { issues: opts.issues } } : {}),
  });
}

/**
 * A list filter naming something that does not exist: refused `400 validation`, never answered
 * with an empty page (the contract refuses unknown filter values).
 */
export function failUnknownFilter(name: string, what: string): never {
  const article = /^[aeiou]/.test(what) ? "an" : "a";
  fail("validation", `No ${what} of that id.`, {
    issues: [{ in: "query", pointer: `#/${name}`, detail: `not ${article} ${what}` }],
  });
}

export function problemResponse(
  c: Context<AppEnv>,
  code: ProblemCode,
  detail: string,
  opts: { issues?: ProblemIssue[] } = {},
): Response {
  const { status, title } = PROBLEMS[code];
  const requestId = c.get("requestId") ?? "";
  const body: Problem = {
    type: problemType(code),
    title,
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
  return c.body(JSON.stringify(body), status, headers);
}

const toPointer = (path: readonly PropertyKey[]): string =>
  `#/${path.map((p) => String(p).replaceAll("~", "~0").replaceAll("/", "~1")).join("/")}`;

const targetName = (target: string): ProblemIssue["in"] =>
  target === "json" ? "body" : target === "param" ? "path" : target === "query" ? "query" : "header";

/** Turns zod issues into problem issues. Zod messages never quote the offending value. */
export function zodIssues(target: string, error: z.ZodError): ProblemIssue[] {
  return error.issues.slice(0, 50).map((i) => {
    const issue: ProblemIssue = { in: targetName(target), pointer: toPointer(i.path), detail: i.message };
    // A batch's volunteer is named by its position too, counted from 1 as a person would.
    const [list, at, field] = i.path;
    if (target === "json" && list === "volunteers" && typeof at === "number") {
      issue.index = at;
      issue.detail = `volunteer ${at + 1}${field === undefined ? "" : ` (${String(field)})`}: ${i.message}`;
    }
    return issue;
  });
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

/** The codes Hono's own exceptions (bad JSON, body limit …) are answered with, by their status. */
const HTTP_EXCEPTION_CODES = [
  "validation",
  "unauthorized",
  "forbidden",
  "not_found",
  "not_acceptable",
  "payload_too_large",
  "unsupported_media_type",
] as const satisfies readonly ProblemCode[];

const httpExceptionCode = (status: number): ProblemCode =>
  HTTP_EXCEPTION_CODES.find((code) => PROBLEMS[code].status === status) ?? "internal";

/** Connection-level failures of postgres.js / node sockets: the database is unreachable. */
const DB_DOWN_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENOTFOUND",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_ENDED",
  "CONNECTION_DESTROYED",
]);

/**
 * SQLSTATEs (besides class 08, connection exceptions) that say the database cannot be used right
 * now, whatever the request: the server or the database is going, gone or full, or refuses this
 * service's credentials. None is the request's fault or a bug of ours, so none is a 500; all clear
 * once an operator acts (or the server is back) and the pool reconnects.
 * - 3D000 invalid_catalog_name: the database does not exist (dropped, or not yet restored).
 * - 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now (starting up or
 *   recovering), 57P04 database_dropped, 57P05 idle_session_timeout: the server ended the
 *   connection or will not take one yet.
 * - 53300 too_many_connections.
 * - 55000 object_not_in_prerequisite_state: what Postgres raises at connect when the database
 *   does not currently accept connections (`ALTER DATABASE … ALLOW_CONNECTIONS false`, a DBA's
 *   maintenance switch). Nothing else we run raises it.
 * - 28000 invalid_authorization_specification, 28P01 invalid_password: arguable, but after a
 *   password or pg_hba change the database is as unusable as if it were down, and a client that
 *   retries on 503 does the right thing; the warning logged says which code it was.
 * Left out: 25006 read_only_sql_transaction (a standby after a failover, but also a bug of ours in
 * a read-only transaction) and 53100/53200 (disk full, out of memory: one statement's failure).
 */
const DB_UNUSABLE_SQLSTATES = new Set([
  "3D000",
  "57P01",
  "57P02",
  "57P03",
  "57P04",
  "57P05",
  "53300",
  "55000",
  "28000",
  "28P01",
]);

/**
 * The code that says the database cannot be reached or used right now (a socket error, class 08,
 * `DB_UNUSABLE_SQLSTATES`), from `err` or what it wraps (drizzle wraps driver errors in `cause`);
 * undefined for any other failure. Such a failure is answered 503 `unavailable`, never 500.
 */
export function databaseUnavailableCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && typeof e === "object" && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") {
      if (DB_DOWN_CODES.has(code) || DB_UNUSABLE_SQLSTATES.has(code) || /^08[0-9A-Z]{3}$/.test(code))
        return code;
    }
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The one error handler: every failure leaves as problem+json with a stable `code`. */
export const onError: ErrorHandler<AppEnv> = (err, c) => {
  if (err instanceof PhaselockError) {
    const code = isProblemCode(err.code) ? err.code : "internal";
    const issues = err.details?.issues as ProblemIssue[] | undefined;
    return problemResponse(c, code, err.message, issues ? { issues } : {});
  }
  if (err instanceof HTTPException) {
    const code = httpExceptionCode(err.status);
    // Hono's own messages ("Malformed JSON in request body", "Payload Too Large") hold no input.
    const detail = code === "internal" ? "Unexpected error." : err.message || PROBLEMS[code].title;
    return problemResponse(c, code, detail);
  }
  const logger = c.get("deps")?.logger ?? consoleLogger;
  if (err instanceof CheckpointFolderError) {
    // The contract's "audit not writable": fail closed, and say where to look without the path.
    logger.error("audit checkpoint folder not writable", {
      requestId: c.get("requestId"),
      error: err.message,
    });
    return problemResponse(
      c,
      "unavailable",
      "Audit checkpoints cannot be written, so none can be signed; an operator must fix the checkpoint folder (the token service's log says which and why).",
    );
  }
  if (err instanceof CheckpointRefusedError) {
    // The database no longer agrees with what the log signed: an expected outcome of tampering,
    // not a bug. Fail closed, as for the folder, and leave the details to the log.
    logger.error("audit checkpoint refused", { requestId: c.get("requestId"), error: err.message });
    return problemResponse(
      c,
      "unavailable",
      "No audit checkpoint is signed: the audit log no longer matches the checkpoints it signed (events removed or rewritten); an operator must investigate (the token service's log says what differs).",
    );
  }
  const unavailable = databaseUnavailableCode(err);
  if (unavailable !== undefined) {
    // Never 500: the client may retry, and the service recovers by itself when the pool reconnects.
    logger.warn("database unavailable", {
      requestId: c.get("requestId"),
      method: c.req.method,
      code: unavailable,
    });
    return problemResponse(c, "unavailable", "The database is unreachable; try again shortly.");
  }
  logger.error("unhandled error", {
    requestId: c.get("requestId"),
    method: c.req.method,
    path: c.req.routePath,
    error: errorText(err),
  });
  return problemResponse(c, "internal", "Unexpected error; quote the requestId when reporting it.");
};

export const notFound: NotFoundHandler<AppEnv> = (c) => problemResponse(c, "not_found", "No such route.");
