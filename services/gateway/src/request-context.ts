import { hmacHex, randomId, viaHttps } from "@phaselock/core";
import type { Context } from "hono";
import { getCookie, setCookie } from "hono/cookie";
import { parse } from "hono/utils/cookie";
import type { GatewayConfig, GatewayEnv } from "./deps.ts";
import { resolveForwarded } from "./forwarding.ts";

// What the gateway reads from a request besides its path: the credential (session cookie or
// bearer), the client's address and device, and the request id; and the cookies it sets.

export const SESSION_COOKIE = "pl_session";
/** Identifies a volunteer's device across redemptions, to spot a link shared too widely. */
export const DEVICE_COOKIE = "pl_device";

const BEARER = /^Bearer[ ]+([^\s]+)\s*$/i;
/** An RFC 9110 auth-scheme other than Bearer, then a space and its credentials (or nothing). */
const OTHER_SCHEME = /^(?!bearer(?: |$))[!#$%&'*+.^_`|~0-9A-Za-z-]+(?: [^\r\n]*)?$/i;
const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The credential of a /pb request: the bearer token, else the session cookie (bearer wins when
 * both are sent). A malformed `Authorization` gives `""`, which is refused as `token_missing`.
 * One of another scheme (`Basic …` from a proxy or a password-protected staging site in front of
 * the gateway; a browser sends it with every request there) is not ours: the cookie still counts.
 */
export function credentialFrom(
  authorization: string | undefined,
  cookie: string | undefined,
): string | undefined {
  if (bearerPresented(authorization)) return BEARER.exec(authorization)?.[1] ?? "";
  if (!cookie) return undefined;
  const value = parse(cookie, SESSION_COOKIE)[SESSION_COOKIE];
  if (!value) return undefined;
  // The cookie parser keeps inner spaces and percent-decodes (`%09`, `%0a`); no credential has
  // whitespace, so such a value is a present but malformed one, like a malformed bearer.
  return /\s/.test(value) ? "" : value;
}

/**
 * Whether the request's credential comes from its `Authorization` (a bearer, or a malformed one):
 * a script's, never a form's. One of another scheme (`Basic`) is not: the cookie is read, and a
 * browser may have sent it, so the cookie's cross-site rules still apply.
 */
export function bearerPresented(authorization: string | undefined): authorization is string {
  return authorization !== undefined && !OTHER_SCHEME.test(authorization);
}

/** The client's `X-Request-Id` when it is a plain short token, else a fresh one. */
export function requestIdFor(incoming: string | undefined): string {
  return incoming && REQUEST_ID.test(incoming) ? incoming : randomId("req", 12);
}

/** Keyed hash of the client address: lets an auditor group requests without storing the IP. */
export function ipHash(config: Pick<GatewayConfig, "ipHashKey">, ip: string | undefined): string | null {
  if (!ip) return null;
  // Every audited request hashes its client, and the same few clients (volunteers, or a proxy in
  // front) come back request after request: an HMAC each was ~2 µs, a lookup is ~0.01. For one key
  // at a time (a gateway has one; another key starts afresh); bounded (cleared when full), so
  // addresses invented by the million cost memory no more than they cost time.
  if (config.ipHashKey !== ipHashMemoKey) {
    ipHashMemo.clear();
    ipHashMemoKey = config.ipHashKey;
  }
  let hash = ipHashMemo.get(ip);
  if (hash === undefined) {
    hash = hmacHex(config.ipHashKey, ip).slice(0, 32);
    if (ipHashMemo.size >= IP_HASH_MEMO_MAX) ipHashMemo.clear();
    ipHashMemo.set(ip, hash);
  }
  return hash;
}

/** Clients whose hash is remembered, at most. */
export const IP_HASH_MEMO_MAX = 10_000;
const ipHashMemo = new Map<string, string>();
let ipHashMemoKey: string | undefined;

/** The peer address of a request Hono received from @hono/node-server (none in `app.request`). */
export function peerIp(c: Context<GatewayEnv>): string | undefined {
  const env = c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined;
  return env?.incoming?.socket?.remoteAddress;
}

/** The client's address: the peer, or from a trusted proxy's `X-Forwarded-For` (forwarding.ts). */
export function clientIp(c: Context<GatewayEnv>): string | undefined {
  return resolveForwarded(c.var.deps.config.trustedProxies, peerIp(c), c.req.header("x-forwarded-for"))
    .client;
}

/**
 * The device id of this browser: the gateway-issued `pl_device` when its tag verifies, else a
 * fresh one set now (a value the client invents counts as no device, so as a new one).
 */
export function deviceId(c: Context<GatewayEnv>): string {
  const known = c.var.deps.devices.verify(getCookie(c, DEVICE_COOKIE));
  if (known) return known;
  const issued = c.var.deps.devices.issue();
  setDeviceCookie(c, issued);
  return issued.slice(0, issued.indexOf("."));
}

/**
 * Whether the answer goes out over HTTPS: SECURE_COOKIES, links handed out under an https
 * PUBLIC_GATEWAY_URL (the gateway is behind HTTPS, whatever its own socket speaks, as the
 * console decides from its issuer URL), or the request says it came over it.
 */
export function isHttps(c: Context<GatewayEnv>): boolean {
  return secure(c);
}

function secure(c: Context<GatewayEnv>): boolean {
  const { secureCookies, publicGatewayUrl } = c.var.deps.config;
  if (secureCookies || publicGatewayUrl?.startsWith("https:")) return true;
  return viaHttps(c.req.url, c.req.header("x-forwarded-proto"));
}

/** The device id of this browser when it holds a valid `pl_device`, else `null` (none is issued). */
export function knownDeviceId(c: Context<GatewayEnv>): string | null {
  return c.var.deps.devices.verify(getCookie(c, DEVICE_COOKIE));
}

/** Gives a browser without a valid one a device id, kept for long: it must outlive every link. */
export function ensureDeviceCookie(c: Context<GatewayEnv>): void {
  if (c.var.deps.devices.verify(getCookie(c, DEVICE_COOKIE))) return;
  setDeviceCookie(c, c.var.deps.devices.issue());
}

function setDeviceCookie(c: Context<GatewayEnv>, value: string): void {
  setCookie(c, DEVICE_COOKIE, value, {
    httpOnly: true,
    sameSite: "Lax",
    path: "/l",
    secure: secure(c),
    maxAge: 400 * 86_400,
  });
}

/** The session credential for `/pb`, until the session's expiry. */
export function setSessionCookie(c: Context<GatewayEnv>, credential: string, maxAgeSeconds: number): void {
  setCookie(c, SESSION_COOKIE, credential, {
    httpOnly: true,
    sameSite: "Strict",
    path: "/pb",
    secure: secure(c),
    maxAge: Math.max(0, maxAgeSeconds),
  });
}

/** Removes the session cookie (signed out). */
export function clearSessionCookie(c: Context<GatewayEnv>): void {
  setCookie(c, SESSION_COOKIE, "", {
    httpOnly: true,
    sameSite: "Strict",
    path: "/pb",
    secure: secure(c),
    maxAge: 0,
  });
}

/**
 * Whether a redemption comes from another site (login CSRF): `Sec-Fetch-Site: cross-site`, or an
 * `Origin` other than the gateway's own (PUBLIC_GATEWAY_URL's, or the request's Host). A request
 * with neither header (a script) is not cross-site.
 *
 * `Origin: null` is not ours, with one exception: the gateway's own pages send
 * `Referrer-Policy: no-referrer` (their URL holds the token), and under it a browser posts their
 * forms with `Origin: null` — and `Sec-Fetch-Site: same-origin`, which a page cannot forge.
 */
export function crossSite(c: Context<GatewayEnv>): boolean {
  return crossSiteOf({
    secFetchSite: c.req.header("sec-fetch-site"),
    origin: c.req.header("origin"),
    host: c.req.header("host"),
    forwardedProto: c.req.header("x-forwarded-proto"),
    url: c.req.url,
    publicGatewayUrl: c.var.deps.config.publicGatewayUrl,
  });
}

/** {@link crossSite} on the headers themselves (the proxy core has no Hono context). */
export function crossSiteOf(r: {
  secFetchSite: string | undefined;
  origin: string | undefined;
  host: string | undefined;
  forwardedProto: string | undefined;
  /** the request's URL: its scheme and authority, as the server saw them */
  url: string;
  publicGatewayUrl: string | undefined;
}): boolean {
  const site = r.secFetchSite?.trim().toLowerCase();
  if (site === "cross-site") return true;
  const origin = r.origin;
  if (origin === undefined) return false;
  // Under `Referrer-Policy: no-referrer` (the landing page's) Chromium posts a same-origin form with
  // `Origin: null`; `Sec-Fetch-Site: same-origin`, which no page can forge, vouches for that alone.
  if (origin.trim() === "null" && site === "same-origin") return false;
  const own = new Set<string>();
  if (r.publicGatewayUrl) own.add(originOf(r.publicGatewayUrl));
  const url = new URL(r.url);
  // Behind an HTTPS proxy (the request says so, as for the Secure cookie) the browser's page is
  // https://<host>. No page can set X-Forwarded-Proto on another site's form, so this opens nothing.
  // Then a page of that host over plain HTTP is not ours: anyone on the volunteer's network can
  // serve one, and a browser that ignores the scheme for SameSite sends the Secure cookie with it.
  if (viaHttps(r.url, r.forwardedProto)) own.add(originOf(`https://${r.host ?? url.host}`));
  else {
    if (r.host) own.add(originOf(`${url.protocol}//${r.host}`));
    own.add(url.origin);
  }
  // "null" (a sandboxed or privacy-sensitive context) is not ours either.
  return !own.has(originOf(origin));
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "invalid";
  }
}
