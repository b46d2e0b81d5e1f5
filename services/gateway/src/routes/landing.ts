import type { LinkClaims } from "@phaselock/policy";
import type { Hono } from "hono";
import { checkRequest } from "../checks.ts";
import type { GatewayEnv } from "../deps.ts";
import { escapeHtml, page } from "../html.ts";
import { CSP, landingStatus, NO_STORE, type Refusal, refusal } from "../refusals.ts";
import { clientIp, deviceId, ensureDeviceCookie, ipHash, setSessionCookie } from "../request-context.ts";
import { sendRefusal } from "./refusal.ts";

export function registerLanding(app: Hono<GatewayEnv>) {
  // The landing page consumes no use: mail scanners and chat previews fetch links.
  app.get("/l/:token", async (c) => {
    const deps = c.var.deps;
    const outcome = await checkRequest(deps, { credential: c.req.param("token") });
    // A refused click on a genuine link feeds the dead-link report; one without verified claims
    // names no link, so it is not stored (an unbounded stream of garbage would be).
    const refuse = (r: Refusal, status: number, claims: LinkClaims | undefined) => {
      if (claims && r.code !== "unavailable") {
        deps.audit.record({
          type: "access",
          at: deps.clock.now(),
          actor: claims.sub,
          campaignId: claims.cmp,
          linkId: claims.jti,
          decision: "deny",
          reason: r.code,
          data: { ipHash: ipHash(deps.config, clientIp(c)), route: "GET /l/:token" },
        });
      }
      return sendRefusal(c, r, status);
    };
    if (!outcome.ok) return refuse(outcome.refusal, landingStatus(outcome.refusal.code), outcome.claims);
    const link = await deps.links.get(outcome.claims.jti);
    if (!link) return refuse(refusal("token_invalid"), 401, outcome.claims);
    if (link.uses >= link.maxUses) return refuse(refusal("uses_exhausted"), 410, outcome.claims);
    const { claims, contest, phase, campaign } = outcome;
    ensureDeviceCookie(c);
    const left = link.maxUses - link.uses;
    const body = `<h1>Phone bank</h1>
<dl>
  <dt>Campaign</dt><dd>${escapeHtml(campaign?.name ?? claims.cmp)}</dd>
  <dt>Contest</dt><dd>${escapeHtml(contest.name)}</dd>
  <dt>Phase</dt><dd>${escapeHtml(phase.name)}</dd>
  <dt>Link ends</dt><dd>${escapeHtml(new Date(claims.exp * 1000).toUTCString())}</dd>
</dl>
<form method="post"><button type="submit">Start calling</button></form>
<p class="note">Pressing the button opens your calling session on this device and uses one of the
${left} remaining ${left === 1 ? "opening" : "openings"} of this link. Do not forward this link.</p>`;
    return c.html(page("Phone bank", body), 200, { ...NO_STORE, "Content-Security-Policy": CSP });
  });

  // Redemption: counts one use atomically, then binds a session cookie to the link.
  app.post("/l/:token", async (c) => {
    const deps = c.var.deps;
    const token = c.req.param("token");
    const outcome = await checkRequest(deps, { credential: token });
    const now = deps.clock.now();
    const ip = ipHash(deps.config, clientIp(c));
    const deny = (r: Refusal, claims: LinkClaims | undefined) => {
      deps.audit.record({
        type: "access",
        at: now,
        actor: claims?.sub,
        campaignId: claims?.cmp,
        linkId: claims?.jti,
        decision: "deny",
        reason: r.code,
        data: { ipHash: ip, route: "POST /l/:token" },
      });
      return sendRefusal(c, r);
    };
    if (!outcome.ok) return deny(outcome.refusal, outcome.claims);
    const { claims } = outcome;
    if (!deps.audit.healthy(now)) return sendRefusal(c, refusal("unavailable"));
    // A link opened on more devices than a volunteer has is circulating: suspend it everywhere.
    let withinDevices: boolean;
    try {
      withinDevices = await deps.limits.admitDevice(claims, deviceId(c), deps.config.maxDevicesPerLink, now);
    } catch {
      return sendRefusal(c, refusal("unavailable"));
    }
    if (!withinDevices) {
      const reason = `redeemed from more than ${deps.config.maxDevicesPerLink} devices`;
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
    const redeemed = await deps.links.redeem(claims.jti, now);
    if (!redeemed.ok)
      return deny(refusal(redeemed.reason === "not_found" ? "token_invalid" : redeemed.reason), claims);
    deps.audit.record({
      type: "link.redeemed",
      at: now,
      actor: claims.sub,
      campaignId: claims.cmp,
      linkId: claims.jti,
      decision: "allow",
      data: { ipHash: ip, uses: redeemed.uses },
    });
    setSessionCookie(c, token, claims.exp - Math.floor(now.getTime() / 1000));
    return c.body(null, 303, { ...NO_STORE, Location: "/pb/" });
  });
}
