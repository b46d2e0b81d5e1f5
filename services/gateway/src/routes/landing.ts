import { randomId } from "@phaselock/core";
import type { LinkClaims } from "@phaselock/policy";
import { askHtml, escapeHtml, timeHtml } from "@phaselock/ui";
import type { Context, Hono } from "hono";
import { checkRequest, context, meterRedemption } from "../checks.ts";
import type { GatewayEnv } from "../deps.ts";
import { page, wantsHtml } from "../html.ts";
import { CSP, landingStatus, NO_STORE, type Refusal, refusal } from "../refusals.ts";
import {
  clientIp,
  credentialFrom,
  crossSite,
  deviceId,
  ensureDeviceCookie,
  ipHash,
  knownDeviceId,
  setSessionCookie,
} from "../request-context.ts";
import { credentialHash, isSessionCredential, newSessionCredential } from "../sessions.ts";
import { sendRefusal } from "./refusal.ts";

/** SESSION_TTL_SECONDS' default: a working day of calls. */
export const SESSION_TTL_SECONDS = 43_200;

export function registerLanding(app: Hono<GatewayEnv>) {
  // The landing page consumes no use: mail scanners and chat previews fetch links.
  app.get("/l/:token", async (c) => {
    const deps = c.var.deps;
    const outcome = await checkRequest(deps, { credential: c.req.param("token") });
    const refuse = (r: Refusal, status: number, claims: LinkClaims | undefined) =>
      landingRefusal(c, r, claims, "GET /l/:token", status);
    if (!outcome.ok) return refuse(outcome.refusal, landingStatus(outcome.refusal), outcome.claims);
    const link = await deps.links.get(outcome.claims.jti);
    if (!link) return refuse(refusal("token_invalid"), 401, outcome.claims);
    // A device holding a live session of this link continues it when it presses the button, and
    // spends no use: its openings being spent is no refusal for it.
    const device = knownDeviceId(c);
    const live = device ? await deps.sessions.findLive(outcome.claims.jti, device, deps.clock.now()) : null;
    if (!live && link.uses >= link.maxUses)
      return refuse(
        refusal("uses_exhausted", context(outcome.claims, deps.policy.snapshot(), deps.clock.now())),
        410,
        outcome.claims,
      );
    const { claims, contest, phase, campaign } = outcome;
    // Showing the page is a gateway decision like any other (the decisions metric counts it as
    // allow): one event, naming the link, so the log shows who opened it before any redemption.
    recordLanding(c, "allow", null, claims, "GET /l/:token");
    ensureDeviceCookie(c);
    const left = link.maxUses - link.uses;
    const body = `<h1>Ready to call?</h1>
<dl>
  <dt>Campaign</dt><dd>${campaignHtml(campaign?.name, claims.cmp)}</dd>
  <dt>Contest</dt><dd>${escapeHtml(contest.name)}</dd>
  <dt>Phase</dt><dd>${escapeHtml(phase.name)}</dd>
  <dt>Link ends</dt><dd>${timeHtml(new Date(claims.exp * 1000))}</dd>
</dl>
<form method="post"><button type="submit" class="primary">Start calling</button></form>
<p class="note">${
      live
        ? "Pressing the button continues your calling session on this device; it uses none of the openings of this link."
        : `Pressing the button opens your calling session on this device and uses one of the
${left} remaining ${left === 1 ? "opening" : "openings"} of this link.`
    } Do not forward this link.</p>
${askHtml(campaign?.contact)}`;
    return c.html(page("Phone bank", body), 200, { ...NO_STORE, "Content-Security-Policy": CSP });
  });

  // Redemption: opens a session (or continues this device's live one), counting one use atomically.
  app.post("/l/:token", async (c) => {
    const deps = c.var.deps;
    const now = deps.clock.now();
    const ip = ipHash(deps.config, clientIp(c));
    const deny = (r: Refusal, claims: LinkClaims | undefined) =>
      landingRefusal(c, r, claims, "POST /l/:token");
    // Login CSRF: another site's page must neither sign a volunteer into its link nor burn a use.
    // Refused whatever the link (the checks only read: no use, no session, nothing seen, and a
    // failure of theirs still answers cross_site); its event names the link when the credential
    // is one, so an auditor sees which link another site's page tried to redeem.
    const fromElsewhere = crossSite(c);
    const checked = checkRequest(deps, { credential: c.req.param("token") });
    if (fromElsewhere) return deny(refusal("cross_site"), (await checked.catch(() => null))?.claims);
    const outcome = await checked;
    if (!outcome.ok) return deny(outcome.refusal, outcome.claims);
    const { claims } = outcome;
    const limited = await meterRedemption(deps, outcome, now);
    if (limited) return deny(limited, claims);
    const redeemed = (data: { uses: number; session: string; continued?: true }) =>
      deps.audit.record({
        type: "link.redeemed",
        at: now,
        actor: claims.sub,
        campaignId: claims.cmp,
        linkId: claims.jti,
        decision: "allow",
        data: { ipHash: ip, ...data },
      });
    // A live session of this link goes on: no use spent, its redemption recorded as continued.
    const continued = async (session: string, credential: string, expiresAt: Date) => {
      const uses = (await deps.links.get(claims.jti))?.uses ?? 0;
      redeemed({ uses, session, continued: true });
      return opened(c, credential, expiresAt, now);
    };
    if (!deps.audit.healthy(now)) return sendRefusal(c, refusal("unavailable"));
    let device: string;
    try {
      device = deviceId(c);
    } catch {
      return sendRefusal(c, refusal("unavailable"));
    }

    // A client showing a live session of this very link as its bearer holds it: it continues, with
    // the credential it has, and spends no use. A session of another link, or an ended one, is no
    // claim at all (the redemption below counts as any other). Not the cookie: a browser never
    // sends it here (its path is /pb), so one arriving was planted (e.g. by a sibling origin).
    const presented = credentialFrom(c.req.header("authorization"), undefined);
    if (presented && isSessionCredential(presented)) {
      const held = await deps.sessions.resolve(credentialHash(presented));
      const s = held?.session;
      if (s && s.linkId === claims.jti && s.endedAt === null && s.expiresAt.getTime() > now.getTime()) {
        return continued(s.id, presented, s.expiresAt);
      }
    }

    // The same device re-opening its link continues its live session: no use, no new device. The
    // device did not show its credential (the cookie's path is /pb), so it gets a new one.
    const live = await deps.sessions.findLive(claims.jti, device, now);
    if (live) {
      const credential = newSessionCredential();
      if (await deps.sessions.rotate(live.id, credentialHash(credential), now)) {
        return continued(live.id, credential, live.expiresAt);
      }
    }

    const credential = newSessionCredential();
    const id = randomId("ses");
    const expiresAt = new Date(
      Math.min(
        now.getTime() + (deps.config.sessionTtlSeconds ?? SESSION_TTL_SECONDS) * 1000,
        claims.exp * 1000,
      ),
    );
    // One use counted and the session opened together. With MAX_DEVICES_PER_LINK set, not when the
    // link's sessions already came from that many other devices: then it is circulating, and is
    // suspended everywhere. Postgres counts the devices (over the link's whole life), never Redis.
    // Unset (the default), every new device spends a use and `maxUses` alone bounds them.
    const maxDevices = deps.config.maxDevicesPerLink;
    const counted = await deps.links.redeem(claims.jti, now, {
      session: {
        id,
        tokenHash: credentialHash(credential),
        linkId: claims.jti,
        deviceId: device,
        createdAt: now,
        expiresAt,
      },
      maxDevices,
    });
    if (!counted.ok) {
      // This device's redemption that won the race (a double tap) opened it: continue that one.
      if (counted.reason === "live_session") {
        const { session } = counted;
        if (await deps.sessions.rotate(session.id, credentialHash(credential), now)) {
          return continued(session.id, credential, session.expiresAt);
        }
        return sendRefusal(c, refusal("unavailable"));
      }
      if (counted.reason === "too_many_devices") {
        const reason = `redeemed from more than ${maxDevices} devices`;
        await deps.suspendLink(claims.jti, reason, now);
        deps.audit.record({
          type: "link.suspended",
          at: now,
          actor: "gateway",
          campaignId: claims.cmp,
          linkId: claims.jti,
          reason: "suspended",
          data: { why: reason, ipHash: ip },
        });
        return sendRefusal(c, refusal("suspended"));
      }
      return deny(
        counted.reason === "not_found"
          ? refusal("token_invalid")
          : refusal(counted.reason, context(claims, deps.policy.snapshot(), now)),
        claims,
      );
    }
    redeemed({ uses: counted.uses, session: id });
    return opened(c, credential, expiresAt, now);
  });

  // A link mangled on its way (`/l/<code>/`, `/l/<code>/more`, `/l/`): what it holds is no link, and
  // a volunteer's browser gets the page that says so and whom to ask, not a bare 404.
  app.on(["GET", "POST"], "/l/*", (c) =>
    landingRefusal(
      c,
      refusal("token_invalid"),
      undefined,
      `${c.req.method === "POST" ? "POST" : "GET"} /l/:token`,
    ),
  );
}

/**
 * A refusal on the landing routes, recorded and answered. A refused click on a genuine link feeds
 * the dead-link report; one without verified claims names no link: an anonymous denial, which the
 * gateway's audit sink bounds per client hash and minute (AnonymousDenialSink), so garbage stays
 * bounded. `unavailable` (the check could not be made) is answered only.
 */
function landingRefusal(
  c: Context<GatewayEnv>,
  r: Refusal,
  claims: LinkClaims | undefined,
  route: "GET /l/:token" | "POST /l/:token",
  status = r.status,
): Response {
  if (r.code !== "unavailable") recordLanding(c, "deny", r.code, claims, route);
  return sendRefusal(c, r, status);
}

/** One access event of the landing routes: the link's when its claims are verified, else none. */
function recordLanding(
  c: Context<GatewayEnv>,
  decision: "allow" | "deny",
  reason: string | null,
  claims: LinkClaims | undefined,
  route: "GET /l/:token" | "POST /l/:token",
): void {
  const deps = c.var.deps;
  deps.audit.record({
    type: "access",
    at: deps.clock.now(),
    actor: claims?.sub ?? null,
    campaignId: claims?.cmp ?? null,
    linkId: claims?.jti ?? null,
    decision,
    reason,
    data: { ipHash: ipHash(deps.config, clientIp(c)), route },
  });
}

/**
 * The campaign by its name and, when that differs, its id (`starmer-2020`): the id is how the
 * coordinator, the contract and the console name it.
 */
function campaignHtml(name: string | undefined, id: string): string {
  if (!name || name === id) return escapeHtml(id);
  return `${escapeHtml(name)} <span class="muted">(${escapeHtml(id)})</span>`;
}

/** A session opened: the cookie, and `201 {session, expiresAt}` for JSON or `303 /pb/` for a browser. */
function opened(c: Context<GatewayEnv>, credential: string, expiresAt: Date, now: Date): Response {
  setSessionCookie(c, credential, Math.floor((expiresAt.getTime() - now.getTime()) / 1000));
  const accept = c.req.header("accept");
  if (accept?.includes("application/json") && !wantsHtml(accept)) {
    return c.json({ session: credential, expiresAt: expiresAt.toISOString() }, 201, NO_STORE);
  }
  return c.body(null, 303, { ...NO_STORE, Location: "/pb/" });
}
