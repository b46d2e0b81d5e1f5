import { askHtml } from "@phaselock/ui";
import type { Hono } from "hono";
import type { GatewayEnv } from "../deps.ts";
import { page, wantsHtml } from "../html.ts";
import { CSP, NO_STORE, refusal } from "../refusals.ts";
import {
  bearerPresented,
  clearSessionCookie,
  clientIp,
  credentialFrom,
  crossSite,
  ipHash,
} from "../request-context.ts";
import { credentialHash, isSessionCredential, looksLikeLink } from "../sessions.ts";
import { sendRefusal } from "./refusal.ts";

/** Where a browser lands after signing out; outside `/pb`, which would need a session. */
export const SIGNED_OUT_PATH = "/signed-out";

// The gateway's own routes under /pb, answered here and never proxied.
export function registerSession(app: Hono<GatewayEnv>) {
  app.post("/pb/_phaselock/session/end", async (c) => {
    const deps = c.var.deps;
    const authorization = c.req.header("authorization");
    // Logout CSRF: the cookie is SameSite=Strict, but a sibling origin of the same site (another
    // port or subdomain) would still send it. A bearer caller is a script, never a forged form; a
    // browser sends `Basic` to a password-protected site with its forms too.
    const bearer = bearerPresented(authorization);
    if (!bearer && crossSite(c)) return sendRefusal(c, refusal("cross_site"));
    const credential = credentialFrom(authorization, c.req.header("cookie"));
    if (!credential) return sendRefusal(c, refusal("token_missing"));
    // As everywhere under /pb: a link is not a session (the check order's second step).
    if (!isSessionCredential(credential))
      return sendRefusal(c, refusal(looksLikeLink(credential) ? "session_required" : "token_invalid"));
    const now = deps.clock.now();
    const hash = credentialHash(credential);
    const resolved = await deps.sessions.resolve(hash);
    if (resolved && (await deps.endSession(hash, now))) {
      deps.audit.record({
        type: "session.ended",
        at: now,
        actor: resolved.link.volunteerRef,
        campaignId: resolved.link.campaignId,
        linkId: resolved.link.id,
        data: { session: resolved.session.id, ipHash: ipHash(deps.config, clientIp(c)) },
      });
    }
    // Unknown and already-ended sessions answer the same: ending is idempotent and says nothing.
    clearSessionCookie(c);
    const accept = c.req.header("accept");
    if (bearer || (accept?.includes("application/json") && !wantsHtml(accept)))
      return c.body(null, 204, NO_STORE);
    return c.body(null, 303, { ...NO_STORE, Location: SIGNED_OUT_PATH });
  });

  app.get(SIGNED_OUT_PATH, (c) =>
    c.html(
      page(
        "Signed out",
        `<h1>You are signed out</h1>
<p>Your calling session on this device has ended, and nothing of it is left on this page.</p>
<p>To call again, open the link you were sent and press Start calling.</p>
${askHtml(undefined, "If your link no longer works, ask")}`,
      ),
      200,
      { ...NO_STORE, "Content-Security-Policy": CSP },
    ),
  );
}
