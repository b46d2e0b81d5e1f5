import { Readable } from "node:stream";
import { answerHeaders, isAnswerHeader } from "./answer-headers.ts";
import { admitAnswer, checkRequest } from "./checks.ts";
import type { GatewayDeps } from "./deps.ts";
import { normalizePath } from "./paths.ts";
import { type Refusal, refusal, renderRefusal } from "./refusals.ts";
import { credentialFrom, ipHash } from "./request-context.ts";
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
export function createProxy(deps: GatewayDeps): ProxyHandler {
  return async (req) => {
    try {
      return await proxy(deps, req);
    } catch (err) {
      // Never echo the error: it might quote a header.
      console.error(
        `gateway: ${(err as Error | null)?.name ?? "error"} while answering a ${req.method} request; refused as unavailable`,
      );
      return refusalResult(refusal("unavailable"), req);
    }
  };
}

async function proxy(deps: GatewayDeps, req: ProxyRequest): Promise<ProxyResult> {
  const { method } = req;
  const normalized = normalizePath(req.rawPath);
  // A malformed path has no route: its scope is null, which the checks refuse as scope_denied.
  const matched = normalized.ok ? deps.routes(method, normalized.path) : null;
  const rule = matched?.response ?? null;
  const outcome = await checkRequest(deps, {
    credential: credentialFrom(req.authorization, req.cookie),
    scope: matched?.scope ?? null,
    meter: { assignsRecord: rule?.assignsRecord === true },
  });
  const now = deps.clock.now();
  const route = normalized.ok ? `${method} ${normalized.path}` : `${method} (malformed path)`;
  const event = (decision: "allow" | "deny", reason: string | null, extra: Record<string, unknown>) =>
    ({
      type: "access",
      at: now,
      actor: outcome.claims?.sub ?? null,
      campaignId: outcome.claims?.cmp ?? null,
      linkId: outcome.claims?.jti ?? null,
      decision,
      reason,
      data: { route, ipHash: ipHash(deps.config, req.clientIp), ...extra },
    }) as const;
  // Denials are batched (bounded, drops counted); an allowed answer carries member data, so it
  // leaves only once its event has committed (group commit: a rejection answers 503).
  const audit = (decision: "deny", reason: string | null, extra: Record<string, unknown> = {}) =>
    deps.audit.record(event(decision, reason, extra));
  const auditAllowed = (extra: Record<string, unknown>) =>
    deps.audit.recordDurable(event("allow", null, extra));

  if (!outcome.ok) {
    if (outcome.audit) audit("deny", outcome.refusal.code);
    return refusalResult(outcome.refusal, req);
  }
  if (!normalized.ok) return refusalResult(refusal("scope_denied"), req); // unreachable: scope null denies
  const { claims } = outcome;

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
  for (const [name, value] of answerHeaders(req.requestId)) out.push(name, value);

  if (!rule) {
    await auditAllowed({ status: res.status });
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
    const quota = await admitAnswer(deps, outcome, filtered.recordId, now);
    if (quota) {
      audit("deny", quota.code, { status: res.status });
      return refusalResult(quota, req);
    }
  }
  await auditAllowed({ status: res.status, record: filtered.recordId });
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
