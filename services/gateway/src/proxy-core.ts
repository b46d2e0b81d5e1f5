import { Readable } from "node:stream";
import { parse } from "hono/utils/cookie";
import { type GatewayDeps, ipHash, SESSION_COOKIE } from "./app.ts";
import type { Gatekeeper } from "./gatekeeper.ts";
import type { Limits } from "./limits.ts";
import { normalizePath } from "./paths.ts";
import { type Refusal, refusal, renderRefusal } from "./refusals.ts";
import {
  type BodySource,
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
  clientIp: string | undefined;
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
}

export type ProxyHandler = (req: ProxyRequest) => Promise<ProxyResult>;

const DIGITS = /^\d{1,15}$/;
const BEARER = /^Bearer[ ]+([^\s]+)\s*$/i;

/** The session cookie or bearer token of a /pb request (bearer wins when both are sent). */
export function tokenFrom(authorization: string | undefined, cookie: string | undefined): string | undefined {
  if (authorization !== undefined) return BEARER.exec(authorization)?.[1] ?? "";
  if (!cookie) return undefined;
  const value = parse(cookie, SESSION_COOKIE)[SESSION_COOKIE];
  if (!value) return undefined;
  // The cookie parser keeps inner spaces and percent-decodes (`%09`, `%0a`); no credential has
  // whitespace, so such a value is a present but malformed one, like a malformed bearer.
  return /\s/.test(value) ? "" : value;
}

function refusalResult(r: Refusal, req: ProxyRequest, status?: number): ProxyResult {
  const out = renderRefusal(r, req.accept, req.requestId, status);
  const headers: string[] = [];
  for (const name in out.headers) headers.push(name, out.headers[name]!);
  return { status: out.status, headers, body: out.body };
}

/**
 * The `/pb/*` proxy, once for both transports: the checks in the contract's order, the audit
 * event for every decision, the upstream call, response minimisation and record quota, and the
 * headers both ways. Never throws: a failure anywhere answers `unavailable` (fail closed).
 */
export function createProxy(deps: GatewayDeps, gatekeeper: Gatekeeper): ProxyHandler {
  return async (req) => {
    try {
      return await proxy(deps, gatekeeper, req);
    } catch (err) {
      // Never echo the error: it might quote a header.
      console.error(
        `gateway: ${(err as Error | null)?.name ?? "error"} while answering a ${req.method} request; refused as unavailable`,
      );
      return refusalResult(refusal("unavailable"), req);
    }
  };
}

async function proxy(deps: GatewayDeps, gatekeeper: Gatekeeper, req: ProxyRequest): Promise<ProxyResult> {
  const { method } = req;
  const normalized = normalizePath(req.rawPath);
  const requiredScope = normalized.ok ? deps.routeScopes(method, normalized.path) : null;
  const outcome = await gatekeeper.check(tokenFrom(req.authorization, req.cookie), requiredScope);
  const now = deps.clock.now();
  const route = normalized.ok ? `${method} ${normalized.path}` : `${method} (malformed path)`;
  const audit = (decision: "allow" | "deny", reason: string | null, extra: Record<string, unknown> = {}) =>
    deps.audit.record({
      type: "access",
      at: now,
      actor: outcome.claims?.sub ?? null,
      campaignId: outcome.claims?.cmp ?? null,
      linkId: outcome.claims?.jti ?? null,
      decision,
      reason,
      data: { route, ipHash: ipHash(deps, req.clientIp), ...extra },
    });

  if (!outcome.ok) {
    audit("deny", outcome.refusal.code);
    return refusalResult(outcome.refusal, req);
  }
  if (!deps.audit.healthy(now)) {
    // Fail closed: never serve member data that cannot be audited.
    return refusalResult(refusal("unavailable"), req);
  }
  const { claims, campaign } = outcome;
  deps.seen(claims.jti, now);
  const rule = normalized.ok ? deps.responseFilter(method, normalized.path) : null;
  let limited: Awaited<ReturnType<Limits["request"]>>;
  try {
    limited = await deps.limits.request(claims, campaign, now);
    // A route that hands out a new member record is not even asked once the quota is spent.
    if (!limited && rule?.assignsRecord) limited = await deps.limits.recordsLeft(claims, campaign, now);
  } catch {
    limited = refusal("unavailable");
  }
  if (limited) {
    audit("deny", limited.code);
    return refusalResult(limited, req);
  }
  if (!normalized.ok) return refusalResult(refusal("scope_denied"), req); // unreachable: scope null denies

  const headers = forwardableHeaders(req.headers, req.connection);
  headers.push(
    "x-phaselock-campaign",
    claims.cmp,
    "x-phaselock-volunteer",
    claims.sub,
    "x-phaselock-link",
    claims.jti,
    "x-phaselock-scopes",
    claims.scp.join(" "),
    "x-phaselock-gateway-secret",
    deps.config.upstreamSecret,
    "x-request-id",
    req.requestId,
  );

  const declared = Number(req.contentLength ?? "0");
  if (declared > deps.config.maxBodyBytes) {
    audit("deny", "payload_too_large");
    return { ...refusalResult(refusal("payload_too_large"), req), close: true };
  }
  const hasBody = method !== "GET" && method !== "HEAD";
  const length = req.contentLength?.trim();
  let res: RawUpstreamResponse;
  try {
    res = await send(deps.upstream, {
      method,
      path: normalized.target,
      headers,
      body: hasBody ? req.body : null,
      contentLength: hasBody && length !== undefined && DIGITS.test(length) ? Number(length) : null,
    });
  } catch (err) {
    if (!(err instanceof UpstreamError)) throw err;
    if (err.code === "body_too_large") {
      audit("deny", "payload_too_large");
      return { ...refusalResult(refusal("payload_too_large"), req), close: true };
    }
    audit("deny", "upstream_error", { upstream: err.code });
    return refusalResult(refusal("upstream_error", undefined, err.status), req);
  }

  // Set-Cookie from the upstream never reaches the volunteer; ours replace the rest below.
  const out: string[] = [];
  let cacheControl = false;
  let contentType = "";
  for (let i = 0; i < res.headers.length; i += 2) {
    const name = res.headers[i]!;
    const value = res.headers[i + 1]!;
    if (name === "set-cookie" || name === "referrer-policy" || name === "x-request-id") continue;
    if (name === "cache-control") cacheControl = true;
    if (rule && (name === "content-length" || name === "content-encoding" || name === "content-type")) {
      if (name === "content-type") contentType = value;
      continue;
    }
    out.push(name, value);
  }
  if (!cacheControl) out.push("cache-control", "no-store");
  out.push("referrer-policy", "no-referrer", "x-request-id", req.requestId);

  if (!rule) {
    audit("allow", null, { status: res.status });
    return { status: res.status, headers: out, body: res.body };
  }
  // A listed route: the volunteer gets only the allow-listed fields, and each member record
  // counts against the link's quota before it is shown.
  const text = await readText(res.body);
  let parsed: unknown;
  try {
    parsed = contentType.includes("json") ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  const filtered = rule.apply(parsed);
  if (filtered.recordId !== null) {
    let quota: Awaited<ReturnType<Limits["admitRecord"]>>;
    try {
      quota = await deps.limits.admitRecord(claims, campaign, filtered.recordId, now);
    } catch {
      quota = refusal("unavailable");
    }
    if (quota) {
      audit("deny", quota.code, { status: res.status });
      return refusalResult(quota, req);
    }
  }
  audit("allow", null, { status: res.status, record: filtered.recordId });
  out.push("content-type", "application/json; charset=utf-8");
  return { status: res.status, headers: out, body: JSON.stringify(filtered.body) };
}

/** Calls the upstream without web objects when it can; through `forward` when it cannot. */
async function send(upstream: Upstream, req: RawUpstreamRequest): Promise<RawUpstreamResponse> {
  if (upstream.request) return upstream.request(req);
  const body =
    req.body instanceof Readable
      ? (Readable.toWeb(req.body) as unknown as ReadableStream<Uint8Array>)
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
