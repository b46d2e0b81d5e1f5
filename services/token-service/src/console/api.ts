/**
 * The console acts only through the token service's own API, in process: the same routes, the
 * same role checks, the same validation, the same audit. A page never reads the database itself.
 */

/** What a page needs to make API requests as the signed-in person. */
export interface ApiClient {
  /** JSON in, JSON (or text) out. */
  call<T = unknown>(method: string, path: string, opts?: ApiCallOptions): Promise<ApiAnswer<T>>;
  /** The raw answer, for streams and files. */
  raw(method: string, path: string, opts?: ApiCallOptions): Promise<Response>;
}

export interface ApiCallOptions {
  json?: unknown;
  body?: string;
  contentType?: string;
  accept?: string;
}

/** One problem+json issue; CSV uploads name the file's row. */
export interface ProblemIssue {
  in?: string;
  pointer?: string;
  row?: number;
  detail: string;
}

export interface Problem {
  code: string;
  title?: string;
  detail?: string;
  status?: number;
  errors?: ProblemIssue[];
}

export type ApiAnswer<T> =
  | { ok: true; status: number; body: T; text: string; headers: Headers }
  | { ok: false; status: number; problem: Problem; text: string; headers: Headers };

interface InProcessApp {
  request(path: string, init: RequestInit, env: ConsoleCallEnv): Response | Promise<Response>;
}

/**
 * The bindings a console page's in-process API call carries (`c.env`), so the request line is the
 * page's alone: the calls it makes are logged at `debug`. Only this code can set them; a client's
 * request reaches `c.env` through the server adapter, never from its headers.
 */
export interface ConsoleCallEnv {
  consoleCall: true;
}

export const isConsoleCall = (env: unknown): boolean =>
  typeof env === "object" && env !== null && (env as Partial<ConsoleCallEnv>).consoleCall === true;

export function apiClient(app: InProcessApp, credential: string): ApiClient {
  const raw: ApiClient["raw"] = async (method, path, opts = {}) => {
    const headers: Record<string, string> = { authorization: `Bearer ${credential}` };
    let body: string | undefined;
    if (opts.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(opts.json);
    } else if (opts.body !== undefined) {
      headers["content-type"] = opts.contentType ?? "text/plain";
      body = opts.body;
    }
    headers.accept = opts.accept ?? "application/json";
    return app.request(
      path,
      { method, headers, ...(body !== undefined ? { body } : {}) },
      { consoleCall: true },
    );
  };
  return {
    raw,
    async call<T>(method: string, path: string, opts: ApiCallOptions = {}): Promise<ApiAnswer<T>> {
      const res = await raw(method, path, opts);
      const text = await res.text();
      const type = res.headers.get("content-type") ?? "";
      if (res.ok) {
        const body = (type.includes("json") && text ? JSON.parse(text) : text) as T;
        return { ok: true, status: res.status, body, text, headers: res.headers };
      }
      return { ok: false, status: res.status, problem: problemOf(res, text), text, headers: res.headers };
    },
  };
}

/** Plain words for a problem code, for people rather than scripts. */
const PLAIN: Record<string, string> = {
  validation: "Some of what you entered is not valid.",
  unauthorized: "Your sign-in is no longer valid. Sign in again.",
  forbidden: "Your API key's role may not do this.",
  not_found: "It does not exist (or is not yours to see).",
  conflict: "It conflicts with what already exists.",
  scope_not_issuable: "Bulk export (members:export) is never given out through a link.",
  phase_closed: "That phase has ended, or the contest is closed.",
  not_entitled: "The campaign is not entitled to these scopes in that phase.",
  payload_too_large: "The file is too large.",
  unsupported_media_type: "That kind of file is not accepted.",
  unavailable: "The service cannot do this safely right now; try again shortly.",
  rate_limited: "Too many requests; wait a moment and try again.",
};

export const plainWords = (p: Problem): string => PLAIN[p.code] ?? p.title ?? "Something went wrong.";

/**
 * The API's detail, for people: its pointer to the `errors` member ("…; see `errors`.") is
 * dropped, since the page lists those issues itself.
 */
export const plainDetail = (p: Problem): string | undefined =>
  p.detail?.replace(/;\s*see `errors`[^.]*\./, ".");

/** `/volunteers/56/ref` → "volunteer 57, ref"; other pointers as field names. */
export function describeIssue(issue: ProblemIssue): string {
  if (issue.row !== undefined) return `Row ${issue.row}: ${issue.detail}`;
  // `#/since`: the `#` (the whole request) names nothing a person typed.
  const parts = (issue.pointer ?? "").split("/").filter((s) => s !== "" && s !== "#");
  if (parts.length === 0) return issue.detail;
  return `${parts.join(" › ")}: ${issue.detail}`;
}

/** The problem a refused API answer carries (its body `text`), else a generic one naming its status. */
export function problemOf(res: Response, text: string): Problem {
  if ((res.headers.get("content-type") ?? "").includes("json") && text) {
    try {
      return JSON.parse(text) as Problem;
    } catch {
      // the generic problem below
    }
  }
  return { code: "internal", detail: `The service answered ${res.status}.` };
}
