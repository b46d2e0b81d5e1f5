import { Readable } from "node:stream";
import { UNMAPPED_ROUTE } from "@phaselock/audit";
import { embeddedElsewhere, HSTS, missingSecurityHeaders, sha256Hex } from "@phaselock/core";
import { answerHeaders, isAnswerHeader } from "./answer-headers.ts";
import { type Admitted, admitAnswer, checkRequest } from "./checks.ts";
import type { GatewayDeps } from "./deps.ts";
import { resolveForwarded } from "./forwarding.ts";
import type { CompiledResponseRule } from "./minimise.ts";
import { normalizePath } from "./paths.ts";
import { type Refusal, type RefusalCode, refusal, renderRefusal } from "./refusals.ts";
import { readBody } from "./request-body.ts";
import { bearerPresented, credentialFrom, crossSiteOf, ipHash } from "./request-context.ts";
import { logFailure } from "./request-log.ts";
import {
  type BodySource,
  contextHeaderValue,
  discardBody,
  forwardableHeaders,
  headersFromList,
  type RawUpstreamRequest,
  type RawUpstreamResponse,
  type Upstream,
  UpstreamError,
} from "./upstream.ts";

/**
 * A `/pb/*` request as either transport sees it (Hono's `Request` or node's `IncomingMessage`),
 * reduced to what the checks and the upstream need. Header values are as received.
 */
export interface ProxyRequest {
  method: string;
  /** the request target exactly as received (`/pb/…` and the query), never a parsed URL */
  rawPath: string;
  authorization: string | undefined;
  cookie: string | undefined;
  accept: string | undefined;
  /** the socket's peer address (who the client is follows from it: forwarding.ts) */
  peerIp: string | undefined;
  /** `X-Forwarded-For` as received, believed only from a trusted proxy */
  forwardedFor: string | undefined;
  contentLength: string | undefined;
  connection: string | undefined;
  requestId: string;
  /** every request header (names in any case; arrays for repeated fields) */
  headers: Iterable<readonly [string, string | string[] | undefined]>;
  body: BodySource | null;
}

/**
 * What to answer: a refusal or minimised answer (`body` a string), or the upstream's answer to
 * relay (`body` a stream, `null` when empty). `headers` is a flat `[name, value, …]` list.
 * `close`: the request body may be left unread, so do not keep the connection.
 */
export interface ProxyResult {
  status: number;
  headers: string[];
  body: BodySource | string | null;
  close?: boolean;
  /** set on a refusal: its code (the decisions metric) */
  refused?: RefusalCode;
}

export type ProxyHandler = (req: ProxyRequest) => Promise<ProxyResult>;

const DEFAULT_BODY_TIMEOUT_MS = 10_000;
/** Methods that change nothing: a navigation from elsewhere may use them (a link to /pb/). */
const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS"]);
const CROSS_SITE_HEADERS = new Set([
  "origin",
  "sec-fetch-site",
  "sec-fetch-mode",
  "sec-fetch-dest",
  "host",
  "x-forwarded-proto",
]);

/**
 * Whether a cookie-borne /pb request comes from another site or a sibling origin. A change
 * (`unsafe`) must come from the gateway's own pages, by the redemption's rule ({@link crossSiteOf}).
 * A read may also be a navigation from elsewhere (a link to the calling page), but not a
 * subresource or script request another site's page makes (`<img src=/pb/calls/next>` would hand
 * out members and spend the volunteer's quota): by Fetch Metadata, `Sec-Fetch-Site` same-site or
 * cross-site with a `Sec-Fetch-Mode` other than navigate. A navigation from elsewhere is the
 * volunteer's only when it is top-level (`Sec-Fetch-Dest: document`, or no dest from a browser
 * older than it): an `<iframe>`, `<embed>` or `<object>` another subdomain's page hides is a
 * "navigate" request too, with the cookie, that `frame-ancestors 'none'` stops rendering only
 * once the upstream has handed out a member. A client sending neither is a script.
 */
function fromAnotherSite(deps: GatewayDeps, req: ProxyRequest, unsafe: boolean): boolean {
  const wanted: Record<string, string | undefined> = {};
  for (const [name, value] of req.headers) {
    const key = name.toLowerCase();
    if (CROSS_SITE_HEADERS.has(key)) wanted[key] = Array.isArray(value) ? value[0] : value;
  }
  if (!unsafe) {
    return embeddedElsewhere({
      site: wanted["sec-fetch-site"],
      mode: wanted["sec-fetch-mode"],
      dest: wanted["sec-fetch-dest"],
    });
  }
  // The gateway listens on plain HTTP; HTTPS in front of it says so by X-Forwarded-Proto. A Host
  // that is no authority names no origin of ours.
  let url = "http://localhost/";
  try {
    if (wanted.host) url = new URL(`http://${wanted.host}/`).href;
  } catch {}
  return crossSiteOf({
    secFetchSite: wanted["sec-fetch-site"],
    origin: wanted.origin,
    host: wanted.host,
    forwardedProto: wanted["x-forwarded-proto"],
    url,
    publicGatewayUrl: deps.config.publicGatewayUrl,
  });
}
const DEFAULT_MAX_CONCURRENT_PER_LINK = 8;

/**
 * Upstream requests in flight per link, on this gateway. A link's requests beyond the limit are
 * refused rather than queued: one volunteer's link, or a script holding it, cannot take the pool.
 */
function createInFlight(limit: number) {
  const counts = new Map<string, number>();
  return {
    /** A release function when the link is under its limit, else `null`. Release is idempotent. */
    acquire(linkId: string): (() => void) | null {
      const n = counts.get(linkId) ?? 0;
      if (n >= limit) return null;
      counts.set(linkId, n + 1);
      let released = false;
      return () => {
        if (released) return;
        released = true;
        const left = (counts.get(linkId) ?? 1) - 1;
        if (left <= 0) counts.delete(linkId);
        else counts.set(linkId, left);
      };
    },
  };
}
type InFlight = ReturnType<typeof createInFlight>;
function refusalResult(r: Refusal, req: ProxyRequest, status?: number): ProxyResult {
  const out = renderRefusal(r, req.accept, req.requestId, status);
  const headers: string[] = [];
  for (const name in out.headers) headers.push(name, out.headers[name]!);
  return { status: out.status, headers, body: out.body, refused: r.code };
}

/**
 * The `/pb/*` proxy, once for both transports: the checks in the contract's order, the audit
 * event for every decision, the upstream call, response minimisation and record quota, and the
 * headers both ways. Never throws: a failure anywhere answers `unavailable` (fail closed).
 */
export function createProxy(deps: GatewayDeps): ProxyHandler {
  const inFlight = createInFlight(deps.config.maxConcurrentPerLink ?? DEFAULT_MAX_CONCURRENT_PER_LINK);
  return async (req) => {
    try {
      const result = await proxy(deps, inFlight, req);
      deps.metrics?.decision(result.refused ?? null);
      return result;
    } catch (err) {
      deps.metrics?.decision("unavailable");
      // Never echo the error: it might quote a header.
      logFailure(
        deps,
        `${(err as Error | null)?.name ?? "error"} while answering a ${req.method} request; refused as unavailable`,
        req.requestId,
      );
      return refusalResult(refusal("unavailable"), req);
    }
  };
}

async function proxy(deps: GatewayDeps, inFlight: InFlight, req: ProxyRequest): Promise<ProxyResult> {
  const { method } = req;
  const forwarded = resolveForwarded(deps.config.trustedProxies, req.peerIp, req.forwardedFor);
  const normalized = normalizePath(req.rawPath);
  // A malformed path has no route: its scope is null, which the checks refuse as scope_denied.
  const matched = normalized.ok ? deps.routes(method, normalized.path) : null;
  const rule = matched?.response ?? null;
  const outcome = await checkRequest(deps, {
    credential: credentialFrom(req.authorization, req.cookie),
    via: "session",
    scope: matched?.scope ?? null,
    meter: {
      assignsRecord: rule?.assignsRecord === true,
      // SameSite=Strict sends the cookie from a sibling origin of the same site too (another
      // subdomain's page posting a form here, or loading /pb/calls/next as an image): a
      // cookie-borne change must come from the gateway's own pages, a read from them or a
      // navigation. A bearer is a script's, never a form's.
      crossSite: !bearerPresented(req.authorization) && fromAnotherSite(deps, req, !SAFE_METHODS.has(method)),
    },
  });
  const now = deps.clock.now();
  // Bounded: the route table's pattern, never the path as sent (which may be 15,000 characters of
  // anything), plus a hash of what was sent so one request can still be matched to its event.
  const route = matched?.pattern ?? UNMAPPED_ROUTE;
  const pathHash = sha256Hex(req.rawPath);
  const event = (decision: "allow" | "deny", reason: string | null, extra: Record<string, unknown>) =>
    ({
      type: "access",
      at: now,
      actor: outcome.claims?.sub ?? null,
      campaignId: outcome.claims?.cmp ?? null,
      linkId: outcome.claims?.jti ?? null,
      decision,
      reason,
      data: {
        route,
        // `scope`: what the route needs, so reports count by scope (calls made), not by path.
        scope: matched?.scope ?? null,
        pathHash,
        // The answer's X-Request-Id: a client can match each answer it got to its event.
        requestId: req.requestId,
        ipHash: ipHash(deps.config, forwarded.client),
        ...extra,
      },
    }) as const;
  // Denials are batched (bounded, drops counted); an allowed answer carries member data, so it
  // leaves only once its event has committed (group commit: a rejection answers 503).
  const audit = (decision: "deny", reason: string | null, extra: Record<string, unknown> = {}) =>
    deps.audit.record(event(decision, reason, extra));
  const auditAllowed = (extra: Record<string, unknown>) =>
    deps.audit.recordDurable(event("allow", null, extra));
  // A request the upstream received and failed (5xx) may have written: its denial is durable too.
  const auditForwardedFailure = (extra: Record<string, unknown>) =>
    deps.audit.recordDurable(event("deny", "upstream_error", { forwarded: true, ...extra }));

  if (!outcome.ok) {
    if (outcome.audit) audit("deny", outcome.refusal.code);
    return refusalResult(outcome.refusal, req);
  }
  if (!normalized.ok) return refusalResult(refusal("scope_denied"), req); // unreachable: scope null denies
  const { claims } = outcome;

  const headers = forwardableHeaders(req.headers, req.connection);
  headers.push(
    "x-phaselock-campaign",
    contextHeaderValue(claims.cmp),
    "x-phaselock-volunteer",
    contextHeaderValue(claims.sub),
    "x-phaselock-link",
    contextHeaderValue(claims.jti),
    "x-phaselock-scopes",
    contextHeaderValue(claims.scp.join(" ")),
    "x-phaselock-gateway-secret",
    deps.config.upstreamSecret,
    "x-request-id",
    req.requestId,
  );
  if (forwarded.chain) headers.push("x-forwarded-for", forwarded.chain);
  // Whom the calling page tells a refused volunteer to ask: always percent-encoded (a contact is
  // free text; `%` in it must not read as an escape).
  const contact = outcome.campaign?.contact;
  if (contact) headers.push("x-phaselock-contact", encodeURIComponent(contact));

  const declared = Number(req.contentLength ?? "0");
  if (declared > deps.config.maxBodyBytes) {
    audit("deny", "payload_too_large");
    return { ...refusalResult(refusal("payload_too_large"), req), close: true };
  }
  // The body is read whole before an upstream connection is taken: a client trickling it holds
  // its own socket only.
  let body: Uint8Array | null = null;
  if (method !== "GET" && method !== "HEAD" && req.body !== null) {
    const read = await readBody(
      req.body,
      deps.config.maxBodyBytes,
      deps.config.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS,
    );
    if (!read.ok) {
      const code = read.reason === "too_large" ? "payload_too_large" : "request_timeout";
      audit("deny", code);
      return { ...refusalResult(refusal(code), req), close: true };
    }
    body = read.bytes;
  }

  const release = inFlight.acquire(claims.jti);
  if (!release) {
    audit("deny", "rate_limited", { inFlight: true });
    return refusalResult(refusal("rate_limited", { retryAfterSeconds: 1 }), req);
  }
  // A HEAD of a minimised route is asked as a GET, so that its answer is filtered and its record
  // counted exactly as a GET's would be; the volunteer then gets the headers alone.
  const head = method === "HEAD";
  let res: RawUpstreamResponse;
  try {
    res = await send(deps.upstream, {
      method: head && rule ? "GET" : method,
      path: normalized.target,
      headers,
      body,
      contentLength: body === null ? null : body.byteLength,
    });
  } catch (err) {
    release();
    if (!(err instanceof UpstreamError)) throw err;
    if (err.code === "body_too_large") {
      audit("deny", "payload_too_large");
      return { ...refusalResult(refusal("payload_too_large"), req), close: true };
    }
    audit("deny", "upstream_error", { upstream: err.code });
    return refusalResult(refusal("upstream_error", undefined, err.status), req);
  }
  try {
    const recorders = { audit, auditAllowed, auditForwardedFailure };
    return await answer(deps, req, outcome, rule, res, head, now, recorders, release);
  } catch (err) {
    release();
    throw err;
  }
}

async function answer(
  deps: GatewayDeps,
  req: ProxyRequest,
  outcome: Admitted,
  rule: CompiledResponseRule | null,
  res: RawUpstreamResponse,
  head: boolean,
  now: Date,
  recorders: {
    /** a denial: batched */
    audit: (decision: "deny", reason: string | null, extra?: Record<string, unknown>) => void;
    /** an allowed answer: resolves once its event is durable */
    auditAllowed: (extra: Record<string, unknown>) => Promise<void>;
    /** a forwarded request the upstream failed: durable, since the upstream may have acted on it */
    auditForwardedFailure: (extra: Record<string, unknown>) => Promise<void>;
  },
  release: () => void,
): Promise<ProxyResult> {
  const { audit, auditAllowed, auditForwardedFailure } = recorders;
  // An upstream that answers 5xx has failed, as one that does not answer: `upstream_error` (502),
  // with none of its body (an error page is neither the contract's refusal nor minimised). The
  // body is dropped with its connection, not drained: the link's in-flight slot is free at once.
  // So has one that refuses the gateway itself (401, 407): no volunteer authenticates to it, the
  // gateway does (PHONEBANK_SECRET), so it names a broken hop, not the volunteer's session. Relayed,
  // the volunteer's page read a 401 as its session refused, and the audit said allow.
  const refusedGateway = res.status === 401 || res.status === 407;
  if (res.status >= 500 || refusedGateway) {
    if (res.body instanceof Readable) res.body.on("error", () => {}).destroy();
    else discardBody(res.body);
    release();
    if (refusedGateway) {
      logFailure(
        deps,
        `the upstream refused the gateway's own credentials (${res.status}): check PHONEBANK_SECRET`,
        req.requestId,
      );
    }
    await auditForwardedFailure({
      upstream: refusedGateway ? "upstream_refused_gateway" : "upstream_failed",
      status: res.status,
    });
    return refusalResult(refusal("upstream_error"), req);
  }
  // Set-Cookie from the upstream never reaches the volunteer; ours replace the rest below.
  const out: string[] = [];
  let cacheControl = false;
  let contentType = "";
  for (let i = 0; i < res.headers.length; i += 2) {
    const name = res.headers[i]!;
    const value = res.headers[i + 1]!;
    if (name === "set-cookie" || name === "referrer-policy" || isAnswerHeader(name)) continue;
    if (name === "cache-control") cacheControl = true;
    if (rule && (name === "content-length" || name === "content-encoding" || name === "content-type")) {
      if (name === "content-type") contentType = value;
      continue;
    }
    out.push(name, value);
  }
  if (!cacheControl) out.push("cache-control", "no-store");
  out.push("referrer-policy", "no-referrer");
  if (deps.config.secureCookies) out.push("strict-transport-security", HSTS);
  for (const [name, value] of answerHeaders(req.requestId)) out.push(name, value);

  if (!rule) {
    // An upstream HTML page is a page of ours: a CSP with frame-ancestors 'none', as the Hono
    // route's middleware gives it (the upstream's own completed, or the default page CSP).
    if (isHtml(res.headers)) completePageHeaders(out);
    await auditAllowed({ status: res.status });
    return { status: res.status, headers: out, body: heldUntilRelayed(res.body, release) };
  }
  // A listed route: the volunteer gets only the allow-listed fields, and each member record
  // counts against the link's quota before it is shown.
  let text: string;
  try {
    text = await readText(res.body);
  } finally {
    release();
  }
  let parsed: unknown;
  try {
    parsed = contentType.includes("json") ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  // A success that is not JSON (an HTML error page or a proxy's text in front of the upstream) is
  // no answer of the route's: it was relayed as 200 `{}`, telling the volunteer's page there was
  // nothing when the upstream had failed, and it may have acted (assigned a call). Failed, as a 5xx.
  if (parsed === undefined && res.status >= 200 && res.status < 300 && res.status !== 204) {
    await auditForwardedFailure({ upstream: "not_json", status: res.status });
    return refusalResult(refusal("upstream_error"), req);
  }
  const filtered = rule.apply(parsed);
  if (filtered.recordId !== null) {
    const quota = await admitAnswer(deps, outcome, filtered.recordId, now);
    if (quota) {
      audit("deny", quota.code, { status: res.status });
      return refusalResult(quota, req);
    }
  }
  await auditAllowed({ status: res.status, record: filtered.recordId });
  out.push("content-type", "application/json; charset=utf-8");
  const json = JSON.stringify(filtered.body);
  if (!head) return { status: res.status, headers: out, body: json };
  out.push("content-length", String(Buffer.byteLength(json)));
  return { status: res.status, headers: out, body: null };
}

/**
 * Keeps the link's in-flight slot until a relayed body has been sent (or abandoned): a streamed
 * answer holds an upstream connection as long as it flows.
 */
function heldUntilRelayed(body: BodySource | null, release: () => void): BodySource | null {
  if (body instanceof Readable && !body.destroyed && !body.readableEnded) {
    body.once("close", release);
    body.once("end", release);
    return body;
  }
  release();
  return body;
}

/** Calls the upstream without web objects when it can; through `forward` when it cannot. */
async function send(upstream: Upstream, req: RawUpstreamRequest): Promise<RawUpstreamResponse> {
  if (upstream.request) return upstream.request(req);
  const body =
    req.body instanceof Readable
      ? (Readable.toWeb(req.body) as unknown as ReadableStream<Uint8Array>)
      : req.body instanceof Uint8Array
        ? new Blob([req.body]).stream()
        : (req.body ?? null);
  const res = await upstream.forward({
    method: req.method,
    path: req.path,
    headers: headersFromList(req.headers),
    body,
  });
  const headers: string[] = [];
  res.headers.forEach((value, name) => {
    if (name !== "set-cookie") headers.push(name, value);
  });
  return { status: res.status, headers, body: res.body };
}

async function readText(body: BodySource | string | null): Promise<string> {
  if (body === null) return "";
  if (typeof body === "string") return body;
  const chunks: Uint8Array[] = [];
  for await (const chunk of body as AsyncIterable<Uint8Array>) chunks.push(chunk);
  return new TextDecoder().decode(Buffer.concat(chunks));
}

/** Whether a flat `[name, value, …]` header list says `Content-Type: text/html…`. */
function isHtml(headers: readonly string[]): boolean {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] === "content-type") return headers[i + 1]!.toLowerCase().startsWith("text/html");
  }
  return false;
}

/** Adds (or completes) the page headers missingSecurityHeaders asks for on a flat header list. */
function completePageHeaders(out: string[]): void {
  const find = (name: string) => {
    for (let i = 0; i < out.length; i += 2) if (out[i] === name) return i;
    return -1;
  };
  const get = (name: string) => {
    const i = find(name.toLowerCase());
    return i === -1 ? undefined : out[i + 1];
  };
  // HSTS is the caller's (SECURE_COOKIES): `false` here only keeps it from being added twice.
  for (const [name, value] of missingSecurityHeaders(get, false)) {
    const lower = name.toLowerCase();
    const i = find(lower);
    if (i === -1) out.push(lower, value);
    else out[i + 1] = value;
  }
}
