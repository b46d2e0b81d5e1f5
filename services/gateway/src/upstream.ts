import { Readable } from "node:stream";
import { Pool } from "undici";

/**
 * What the proxy hands to the upstream. `path` is already normalised (see paths.ts), has no `/pb`
 * prefix and carries the query, e.g. `/calls/next?x=1`. `headers` are the ones to send: the caller
 * has already removed the client's credentials and set the `X-Phaselock-*` context headers.
 */
export interface UpstreamRequest {
  method: string;
  path: string;
  headers: Headers;
  body: ReadableStream<Uint8Array> | null;
}

/** A request body as either transport holds it: a node stream or a web stream. */
export type BodySource = Readable | ReadableStream<Uint8Array>;

/**
 * The transport-neutral form of an upstream request, without `Headers` or web streams. `headers`
 * is a flat `[name, value, …]` list that is final: the caller built it with
 * `forwardableHeaders` and added the context headers. `contentLength` is the client's declared
 * length (already checked against the limit), or `null` for a chunked or absent body. A body the
 * proxy has already read whole is bytes: its length is what is sent.
 */
export interface RawUpstreamRequest {
  method: string;
  path: string;
  headers: string[];
  body: BodySource | Uint8Array | null;
  contentLength: number | null;
}

/** An upstream answer: lower-case names, hop-by-hop fields removed, `body` null when empty. */
export interface RawUpstreamResponse {
  status: number;
  headers: string[];
  body: BodySource | null;
}

/** The member-data app behind the gateway. Throws `UpstreamError` when it cannot answer. */
export interface Upstream {
  forward(req: UpstreamRequest): Promise<Response>;
  /**
   * The same, without web objects: what the node fast path uses. Optional; the proxy falls back
   * on `forward` for an upstream without it (the in-process upstream of the tests).
   */
  request?(req: RawUpstreamRequest): Promise<RawUpstreamResponse>;
}

/** An HTTP upstream holds a connection pool; `close()` drains it on shutdown. */
export interface HttpUpstream extends Upstream {
  close(): Promise<void>;
  /** the connection pool's use, for /metrics */
  stats(): { size: number; connected: number; free: number; pending: number; running: number };
}

export type UpstreamErrorCode =
  | "upstream_timeout"
  | "upstream_unreachable"
  | "upstream_bad_response"
  | "body_too_large";

const upstreamErrorStatus = {
  upstream_timeout: 504,
  upstream_unreachable: 502,
  upstream_bad_response: 502,
  body_too_large: 413,
} as const satisfies Record<UpstreamErrorCode, number>;

/**
 * The upstream could not be reached, did not answer in time, answered with something that is not
 * HTTP we can relay, or the request body was over the limit. `status` is what the gateway should
 * answer: 504 for a timeout, 502 for the other upstream failures (both as `upstream_error`), 413
 * for the body. Messages never contain request data.
 */
export class UpstreamError extends Error {
  readonly code: UpstreamErrorCode;
  readonly status: 502 | 504 | 413;
  constructor(code: UpstreamErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = "UpstreamError";
    this.code = code;
    this.status = upstreamErrorStatus[code];
  }
}

// RFC 9110 §7.6.1 hop-by-hop fields, plus `proxy-connection` and `http2-settings` seen in the wild.
// Any `proxy-*` field is dropped too (Proxy-Authorization must never travel on).
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
]);

// Request-only: the client's credentials never reach the upstream (the caller strips them too),
// `host` is the upstream's own, `expect` is not supported by undici, and `content-length` is
// re-derived below.
const REQUEST_DROPPED = new Set(["cookie", "authorization", "host", "expect", "content-length"]);

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
const REQUEST_TARGET = /^\/[\x21-\x7e]*$/;
const DIGITS = /^\d{1,15}$/;
const METHODS_WITHOUT_BODY = new Set(["GET", "HEAD"]);
// Statuses for which a Response may not have a body (Fetch "null body status").
const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);

/** Names listed in `Connection` (lower-cased): they are hop-by-hop for this message only. */
function connectionTokens(value: string | null | undefined): Set<string> {
  const out = new Set<string>();
  if (!value) return out;
  for (const t of value.split(",")) {
    const name = t.trim().toLowerCase();
    if (name) out.add(name);
  }
  return out;
}

function isHopByHop(name: string, listed: Set<string>): boolean {
  return HOP_BY_HOP.has(name) || name.startsWith("proxy-") || listed.has(name);
}

/**
 * The headers to send upstream, as a flat `[name, value, …]` list. Every name and value is checked
 * here against the same rules undici applies, because undici 7 can leave a pool slot busy after
 * rejecting a request's arguments: a bad value must never get as far as the pool.
 */
function requestHeaders(headers: Headers, bodyLength: number | null): string[] {
  const listed = connectionTokens(headers.get("connection"));
  const flat: string[] = [];
  for (const [name, value] of headers) {
    // Headers yields lower-case names, combined values.
    if (isHopByHop(name, listed) || REQUEST_DROPPED.has(name)) continue;
    if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) continue;
    flat.push(name, value);
  }
  if (bodyLength !== null) flat.push("content-length", String(bodyLength));
  return flat;
}

/** Response headers from upstream as a flat list of lower-case names, without hop-by-hop fields. */
function responseHeaderList(raw: Record<string, string | string[] | undefined>): string[] {
  const connection = raw.connection;
  const listed = connectionTokens(Array.isArray(connection) ? connection.join(",") : connection);
  const out: string[] = [];
  for (const name in raw) {
    const value = raw[name];
    if (value === undefined) continue;
    const lower = name.toLowerCase();
    if (isHopByHop(lower, listed)) continue;
    if (Array.isArray(value)) for (const v of value) out.push(lower, v);
    else out.push(lower, value);
  }
  return out;
}

/** Response headers from upstream, without hop-by-hop fields. */
function responseHeaders(raw: Record<string, string | string[] | undefined>): Headers {
  return headersFromList(responseHeaderList(raw));
}

/** A `Headers` from a flat `[name, value, …]` list. */
export function headersFromList(flat: readonly string[]): Headers {
  const out = new Headers();
  for (let i = 0; i < flat.length; i += 2) out.append(flat[i]!, flat[i + 1]!);
  return out;
}

// Who the client is, which only the gateway may say (it sets X-Forwarded-For itself).
const FORWARDING = new Set([
  "forwarded",
  "x-forwarded-for",
  "x-forwarded-proto",
  "x-forwarded-host",
  "x-forwarded-port",
  "x-forwarded-prefix",
  "x-real-ip",
  "x-client-ip",
  "true-client-ip",
]);

// A method or target other than the request's, which frameworks behind a proxy honour (Express's
// method-override, Symfony, Laravel, ASP.NET Core; IIS and older Symfony for the URL): the upstream
// would act on a method or path the gateway never checked (a GET scoped `calls:read` overridden to
// a DELETE, a `/members/export` named in a header). The checks see the request line only.
const OVERRIDES = new Set([
  "x-http-method-override",
  "x-http-method",
  "x-method-override",
  "x-original-url",
  "x-rewrite-url",
  "x-original-method",
]);

/**
 * A header name as servers that map `_` to `-` (CGI, many frameworks, some proxies) read it: a
 * client's `X_Phaselock_Link` is their `X-Phaselock-Link`, so every drop rule looks at this form.
 */
const normalisedName = (name: string) => name.toLowerCase().replaceAll("_", "-");

/**
 * The client's request headers that may travel upstream, as a flat list: no hop-by-hop field (nor
 * any named in `Connection`), no credentials (`Cookie`, `Authorization`), nothing claiming to be
 * ours (`X-Phaselock-*`) or to say who the client is (`Forwarded`, `X-Forwarded-*`, `X-Real-IP`),
 * nothing overriding the method or target the gateway checked (`X-HTTP-Method-Override`,
 * `X-Original-URL` …), no `Host`, `Content-Length` or `X-Request-Id` (the proxy sets its own),
 * and only names and values undici accepts. Names are compared after `_` → `-` and case folding.
 */
export function forwardableHeaders(
  entries: Iterable<readonly [string, string | string[] | undefined]>,
  connection: string | undefined,
): string[] {
  const listed = connectionTokens(connection);
  const flat: string[] = [];
  for (const [rawName, rawValue] of entries) {
    if (rawValue === undefined) continue;
    const name = rawName.toLowerCase();
    const norm = normalisedName(name);
    if (isHopByHop(name, listed) || isHopByHop(norm, listed) || REQUEST_DROPPED.has(norm)) continue;
    if (norm.startsWith("x-phaselock-") || FORWARDING.has(norm) || OVERRIDES.has(norm)) continue;
    if (norm === "x-request-id") continue; // the proxy sends its own
    const value = Array.isArray(rawValue) ? rawValue.join(", ") : rawValue;
    if (!TOKEN.test(name) || !FIELD_VALUE.test(value)) continue;
    flat.push(name, value);
  }
  return flat;
}

/**
 * A context value (`X-Phaselock-*`) as sent: unchanged when it is plain printable ASCII, else
 * percent-encoded as UTF-8 with only RFC 3986 unreserved characters kept. A ref such as
 * `Łukasz-1` is not a valid field value for undici or node; sent raw it fails the request.
 */
export function contextHeaderValue(value: string): string {
  if (/^[\x20-\x7e]*$/.test(value) && value.trim() === value) return value;
  let out = "";
  for (const byte of new TextEncoder().encode(value)) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/**
 * Throws unless every name and value is one undici accepts. undici can reject a request's
 * arguments after a pool slot is taken and never give the slot back, so nothing it would reject
 * may reach the pool: a bug upstream of here costs one request, not the gateway.
 */
function checkHeaderList(flat: readonly string[]): void {
  if (flat.length % 2 !== 0) throw new TypeError("Upstream header list is not name/value pairs");
  for (let i = 0; i < flat.length; i += 2) {
    if (!TOKEN.test(flat[i]!) || !FIELD_VALUE.test(flat[i + 1]!)) {
      throw new TypeError("Upstream request header is not one HTTP can carry");
    }
  }
}

/** `Content-Length` of the incoming request when it is present and well-formed, else `null`. */
function declaredLength(headers: Headers): number | null {
  const v = headers.get("content-length");
  if (v === null || !DIGITS.test(v.trim())) return null;
  return Number(v.trim());
}

/**
 * Passes `body` through, failing with `body_too_large` once more than `max` bytes have gone by.
 * Counting the stream, not trusting `Content-Length`, is what bounds a chunked or lying client.
 */
async function* limitBody(body: BodySource, max: number, onTooLarge: () => void): AsyncGenerator<Uint8Array> {
  if (body instanceof Readable) {
    // Not destroyed on the way out: an IncomingMessage destroyed here would take the socket, and
    // with it the 413 answer, along. Node discards the rest of an unread body after the answer.
    let total = 0;
    for await (const chunk of body.iterator({ destroyOnReturn: false }) as AsyncIterable<Uint8Array>) {
      total += chunk.byteLength;
      if (total > max) {
        onTooLarge();
        throw new UpstreamError("body_too_large", `Request body is over ${max} bytes.`);
      }
      yield chunk;
    }
    return;
  }
  const reader = body.getReader();
  let total = 0;
  let finished = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) {
        finished = true;
        return;
      }
      total += value.byteLength;
      if (total > max) {
        onTooLarge();
        throw new UpstreamError("body_too_large", `Request body is over ${max} bytes.`);
      }
      yield value;
    }
  } finally {
    if (!finished) reader.cancel().catch(() => {});
  }
}

/** Releases a body that will not be read. */
export function discardBody(body: BodySource | Uint8Array | null | undefined): void {
  if (!body || body instanceof Uint8Array) return;
  if (body instanceof Readable) body.on("error", () => {}).resume();
  else body.cancel().catch(() => {});
}

function checkTarget(method: string, path: string): void {
  // These are bugs in the caller (paths come from normalizePath); refuse before undici sees them.
  if (!TOKEN.test(method)) throw new TypeError("Upstream request method is not an HTTP token");
  if (method === "CONNECT" || method === "TRACE") throw new TypeError(`Upstream does not relay ${method}`);
  if (!REQUEST_TARGET.test(path)) throw new TypeError("Upstream request path is not an origin-form target");
}

/** A web `Response` over a raw answer, for the `forward` interface. */
function toWebResponse(res: RawUpstreamResponse): Response {
  const body =
    res.body === null
      ? null
      : res.body instanceof Readable
        ? // Node's web stream type and the global one are the same object at run time.
          (Readable.toWeb(res.body) as unknown as ReadableStream<Uint8Array>)
        : res.body;
  return new Response(body, { status: res.status, headers: headersFromList(res.headers) });
}

const TIMEOUT_CODES = new Set(["UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT", "UND_ERR_CONNECT_TIMEOUT"]);

export interface HttpUpstreamOptions {
  /** Origin of the upstream, optionally with a base path, e.g. `http://127.0.0.1:8090`. */
  baseUrl: string;
  /** Time from `forward()` until the response headers arrive, and the longest pause in the body. */
  timeoutMs: number;
  /** Largest request body forwarded, counted on the stream. */
  maxBodyBytes: number;
  /** Keep-alive connections to the upstream. Default 64. */
  connections?: number;
}

/**
 * An upstream over HTTP/1.1 with a keep-alive undici `Pool` (not global fetch: no per-request
 * dispatcher lookup, no decompression, raw headers). Drops hop-by-hop headers both ways, never
 * forwards `Cookie` or `Authorization`, and bounds the request body and the wait for an answer.
 * Bodies of `GET` and `HEAD` are not forwarded. (undici closes the connection after a `HEAD`, on
 * purpose, for servers that wrongly send a body; so HEAD requests do not reuse connections.)
 */
export function createHttpUpstream(opts: HttpUpstreamOptions): HttpUpstream {
  const { timeoutMs, maxBodyBytes } = opts;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new RangeError("timeoutMs must be > 0");
  if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes < 0)
    throw new RangeError("maxBodyBytes must be >= 0");

  const base = new URL(opts.baseUrl);
  if (base.protocol !== "http:" && base.protocol !== "https:") {
    throw new RangeError("baseUrl must be an http(s) URL");
  }
  if (base.search || base.hash || base.username || base.password) {
    throw new RangeError("baseUrl must be an origin with an optional path, nothing else");
  }
  const basePath = base.pathname.replace(/\/+$/, "");

  const pool = new Pool(base.origin, {
    connections: opts.connections ?? 64,
    connect: { timeout: timeoutMs },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    keepAliveTimeout: 10_000,
  });

  async function request(req: RawUpstreamRequest): Promise<RawUpstreamResponse> {
    const method = req.method.toUpperCase();
    checkTarget(method, req.path);
    checkHeaderList(req.headers);

    const sendsBody = req.body !== null && !METHODS_WITHOUT_BODY.has(method);
    let tooLarge = false;
    let body: Readable | Uint8Array | null;
    let flat: string[];
    if (req.body instanceof Uint8Array) {
      body = sendsBody ? req.body : null;
      if (body && body.byteLength > maxBodyBytes) {
        throw new UpstreamError("body_too_large", `Request body is over ${maxBodyBytes} bytes.`);
      }
      flat = body ? [...req.headers, "content-length", String(body.byteLength)] : req.headers;
    } else {
      const declared = sendsBody ? req.contentLength : null;
      if (declared !== null && declared > maxBodyBytes) {
        discardBody(req.body);
        throw new UpstreamError("body_too_large", `Request body is over ${maxBodyBytes} bytes.`);
      }
      if (!sendsBody) discardBody(req.body);
      body =
        sendsBody && req.body
          ? Readable.from(
              limitBody(req.body, maxBodyBytes, () => {
                tooLarge = true;
              }),
              { objectMode: false },
            )
          : null;
      flat = declared === null ? req.headers : [...req.headers, "content-length", String(declared)];
    }

    // One deadline from now until the headers arrive, covering time queued for a free
    // connection and the upload, which undici's own timers do not.
    const deadline = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      deadline.abort(
        new UpstreamError("upstream_timeout", `Upstream did not answer within ${timeoutMs} ms.`),
      );
    }, timeoutMs);

    let res: Awaited<ReturnType<Pool["request"]>>;
    try {
      res = await pool.request({
        method,
        path: `${basePath}${req.path}`,
        headers: flat,
        body,
        signal: deadline.signal,
      });
    } catch (err) {
      if (body instanceof Readable) body.destroy();
      throw mapError(err, { timedOut, tooLarge });
    } finally {
      clearTimeout(timer);
    }

    const { statusCode } = res;
    if (statusCode < 200 || statusCode > 599) {
      res.body.on("error", () => {}).destroy();
      throw new UpstreamError("upstream_bad_response", `Upstream answered with status ${statusCode}.`);
    }
    const headers = responseHeaderList(res.headers);
    if (method === "HEAD" || NULL_BODY_STATUS.has(statusCode)) {
      // Consume the (empty) body so the connection goes back to the pool. Not `dump()`: it destroys
      // the body, and with it the connection, when Content-Length is large, as it is for HEAD.
      res.body.on("error", () => {}).resume();
      return { status: statusCode, headers, body: null };
    }
    return { status: statusCode, headers, body: res.body };
  }

  return {
    request,
    async forward(req) {
      const method = req.method.toUpperCase();
      const sendsBody = req.body !== null && !METHODS_WITHOUT_BODY.has(method);
      const res = await request({
        method,
        path: req.path,
        headers: requestHeaders(req.headers, null),
        body: req.body,
        contentLength: sendsBody ? declaredLength(req.headers) : null,
      });
      return toWebResponse(res);
    },
    close: () => pool.close(),
    stats: () => {
      const s = pool.stats;
      return { size: s.size, connected: s.connected, free: s.free, pending: s.pending, running: s.running };
    },
  };
}

function mapError(err: unknown, state: { timedOut: boolean; tooLarge: boolean }): UpstreamError {
  if (state.tooLarge)
    return new UpstreamError("body_too_large", "Request body is over the limit.", { cause: err });
  if (err instanceof UpstreamError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (state.timedOut || (typeof code === "string" && TIMEOUT_CODES.has(code))) {
    return new UpstreamError("upstream_timeout", "Upstream did not answer in time.", { cause: err });
  }
  return new UpstreamError("upstream_unreachable", "Upstream could not be reached.", { cause: err });
}

/** Something that answers a `Request` in process, such as a Hono app. */
export interface InProcessApp {
  request(input: Request): Response | Promise<Response>;
}

/**
 * An upstream that calls an app in process, for tests and the single-process stack. Applies the
 * same header rules and body limit as the HTTP upstream; the body is read (at most
 * `maxBodyBytes`) before the app sees it. An exception from the app is `upstream_unreachable`.
 */
export function createInProcessUpstream(
  app: InProcessApp,
  opts: { maxBodyBytes?: number; origin?: string } = {},
): Upstream {
  const maxBodyBytes = opts.maxBodyBytes ?? 1024 * 1024;
  const origin = opts.origin ?? "http://upstream.invalid";
  return {
    async forward(req) {
      const method = req.method.toUpperCase();
      checkTarget(method, req.path);

      let body: Uint8Array | null = null;
      if (req.body !== null && !METHODS_WITHOUT_BODY.has(method)) {
        body = await readLimited(req.body, maxBodyBytes);
      } else {
        await req.body?.cancel().catch(() => {});
      }

      const flat = requestHeaders(req.headers, body === null ? null : body.byteLength);
      const headers = new Headers();
      for (let i = 0; i < flat.length; i += 2) headers.append(flat[i]!, flat[i + 1]!);

      let res: Response;
      try {
        res = await app.request(new Request(`${origin}${req.path}`, { method, headers, body }));
      } catch (err) {
        throw new UpstreamError("upstream_unreachable", "Upstream failed.", { cause: err });
      }

      const raw: Record<string, string | string[]> = {};
      for (const [name, value] of res.headers) raw[name] = value;
      const setCookies = res.headers.getSetCookie();
      if (setCookies.length > 0) raw["set-cookie"] = setCookies;
      const out = responseHeaders(raw);
      if (method === "HEAD" || NULL_BODY_STATUS.has(res.status)) {
        await res.body?.cancel().catch(() => {});
        return new Response(null, { status: res.status, headers: out });
      }
      return new Response(res.body, { status: res.status, headers: out });
    },
  };
}

async function readLimited(body: ReadableStream<Uint8Array>, max: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of limitBody(body, max, () => {})) {
    chunks.push(chunk);
    total += chunk.byteLength;
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
