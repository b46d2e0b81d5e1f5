import { hmacHex, randomId, sha256Hex } from "@phaselock/core";
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
const DEVICE_ID = /^dev_[A-Za-z0-9_-]{10,64}$/;
const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * The credential of a /pb request: the bearer token, else the session cookie (bearer wins when
 * both are sent). A malformed `Authorization` gives `""`, which is refused as `token_missing`.
 */
export function credentialFrom(
  authorization: string | undefined,
  cookie: string | undefined,
): string | undefined {
  if (authorization !== undefined) return BEARER.exec(authorization)?.[1] ?? "";
  if (!cookie) return undefined;
  const value = parse(cookie, SESSION_COOKIE)[SESSION_COOKIE];
  if (!value) return undefined;
  // The cookie parser keeps inner spaces and percent-decodes (`%09`, `%0a`); no credential has
  // whitespace, so such a value is a present but malformed one, like a malformed bearer.
  return /\s/.test(value) ? "" : value;
}

/** The client's `X-Request-Id` when it is a plain short token, else a fresh one. */
export function requestIdFor(incoming: string | undefined): string {
  return incoming && REQUEST_ID.test(incoming) ? incoming : randomId("req", 12);
}

/** Keyed hash of the client address: lets an auditor group requests without storing the IP. */
export const ipHash = (config: Pick<GatewayConfig, "ipHashKey">, ip: string | undefined): string | null =>
  ip ? hmacHex(config.ipHashKey, ip).slice(0, 32) : null;

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

/** The device cookie set by the landing page; without one (a script), the address and agent. */
export function deviceId(c: Context<GatewayEnv>): string {
  const cookie = getCookie(c, DEVICE_COOKIE);
  if (cookie && DEVICE_ID.test(cookie)) return cookie;
  const ip = ipHash(c.var.deps.config, clientIp(c)) ?? "";
  return `ua_${sha256Hex(`${ip}|${c.req.header("user-agent") ?? ""}`).slice(0, 32)}`;
}

function secure(c: Context<GatewayEnv>): boolean {
  if (c.var.deps.config.secureCookies) return true;
  return c.req.header("x-forwarded-proto") === "https" || c.req.url.startsWith("https:");
}

/** Gives a browser that has none a device id, kept for long: it must outlive every link. */
export function ensureDeviceCookie(c: Context<GatewayEnv>): void {
  if (getCookie(c, DEVICE_COOKIE)) return;
  setCookie(c, DEVICE_COOKIE, randomId("dev"), {
    httpOnly: true,
    sameSite: "Lax",
    path: "/l",
    secure: secure(c),
    maxAge: 400 * 86_400,
  });
}

/** Binds the redeemed link to this browser for `/pb`, until the link's `exp`. */
export function setSessionCookie(c: Context<GatewayEnv>, token: string, maxAgeSeconds: number): void {
  setCookie(c, SESSION_COOKIE, token, {
    httpOnly: true,
    sameSite: "Strict",
    path: "/pb",
    secure: secure(c),
    maxAge: Math.max(0, maxAgeSeconds),
  });
}
