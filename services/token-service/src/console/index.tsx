/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import { embeddedElsewhere, safeEqual, viaHttps } from "@phaselock/core";
import { type Context, Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { createMiddleware } from "hono/factory";
import type { AppEnv } from "../context.ts";
import { databaseUnavailableCode } from "../errors.ts";
import { authenticate } from "../middleware/auth.ts";
import { registerAdminPages } from "./admin-pages.tsx";
import { apiClient } from "./api.ts";
import { CONSOLE_CSS, CONSOLE_JS } from "./assets.ts";
import { registerAuditPages } from "./audit-page.tsx";
import { registerCampaignPages } from "./campaigns-page.tsx";
import { registerContestPages } from "./contests-page.tsx";
import type { ConsoleEnv } from "./env.ts";
import { type Flash, Layout, Notice, type Viewer } from "./layout.tsx";
import { registerLinkPages } from "./links-page.tsx";
import { registerProgressPages } from "./progress-page.tsx";
import { page } from "./render.tsx";
import type { ConsoleSessions } from "./sessions.ts";
import { SignInPage } from "./sign-in-page.tsx";

export const CONSOLE_COOKIE = "pl_console";

/** Every console answer: nothing from elsewhere, no framing, no referrer, no cache. */
export const CONSOLE_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** An upload of 10,000 volunteers with extra columns fits; anything larger is not a sheet of ours. */
const MAX_CONSOLE_BODY = 8 * 1024 * 1024;
/** What an unauthenticated sign-in form may send. */
const MAX_SIGN_IN_BODY = 16 * 1024;

/**
 * Whether a POST comes from a console page (same origin). Fetch Metadata first: browsers set
 * `Sec-Fetch-Site` themselves and pages cannot forge it. Under `Referrer-Policy: no-referrer`
 * Chromium sends `Origin: null` on same-origin form posts, so Origin is the check only for a
 * browser without Fetch Metadata (there `null` is refused). The CSRF token is checked besides.
 */
export function sameOrigin(c: Context): boolean {
  const site = c.req.header("sec-fetch-site")?.trim().toLowerCase();
  if (site !== undefined) return site === "same-origin";
  const origin = c.req.header("origin");
  if (origin === undefined) return true;
  if (origin === "null") return false;
  try {
    const host = c.req.header("host") ?? new URL(c.req.url).host;
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}

/** `Secure` whenever the console is reached over HTTPS: the issuer's URL, the request's, or a TLS proxy's `X-Forwarded-Proto` (as HSTS is decided). */
const secureCookie = (c: Context<ConsoleEnv>): boolean =>
  c.var.deps.config.issuer.startsWith("https:") || viaHttps(c.req.url, c.req.header("x-forwarded-proto"));

/** Where each role starts: its day-to-day page. */
const HOME: Record<Viewer["role"], string> = {
  admin: "/console/contests",
  coordinator: "/console/links",
  auditor: "/console/audit",
};
const home = (v: Viewer): string => HOME[v.role];

/**
 * The console, mounted at `/console`. Pages are server-rendered; every action is a request to
 * `api` (the token service's own app) with the signed-in person's credential, so roles,
 * validation and audit are exactly the API's.
 */
export function registerConsole(
  app: Hono<AppEnv> & { request: (path: string, init: RequestInit) => Response | Promise<Response> },
  sessions: ConsoleSessions,
): void {
  const con = new Hono<ConsoleEnv>();

  con.use(async (c, next) => {
    await next();
    c.header("Content-Security-Policy", CONSOLE_CSP);
    c.header("X-Content-Type-Options", "nosniff");
    c.header("Referrer-Policy", "no-referrer");
    c.header("X-Frame-Options", "DENY");
    if (!c.req.path.startsWith("/console/assets/")) c.header("Cache-Control", "no-store");
  });
  con.use(
    bodyLimit({
      maxSize: MAX_CONSOLE_BODY,
      onError: (c) => c.text("The upload is too large (at most 8 MiB).", 413),
    }),
  );

  con.get("/assets/console.css", (c) => {
    c.header("Cache-Control", "public, max-age=3600");
    return c.body(CONSOLE_CSS, 200, { "Content-Type": "text/css; charset=utf-8" });
  });
  con.get("/assets/console.js", (c) => {
    c.header("Cache-Control", "public, max-age=3600");
    return c.body(CONSOLE_JS, 200, { "Content-Type": "text/javascript; charset=utf-8" });
  });

  // Before any session is looked at (and its idle timer restarted).
  con.use(async (c, next) => {
    if (
      (c.req.method === "GET" || c.req.method === "HEAD") &&
      // A sibling's <img> or hidden <iframe> of a console page (SameSite=Strict sends the cookie
      // to another port or subdomain of the site) would spend a one-time key's showing or keep an
      // idle session alive.
      embeddedElsewhere({
        site: c.req.header("sec-fetch-site"),
        mode: c.req.header("sec-fetch-mode"),
        dest: c.req.header("sec-fetch-dest"),
      })
    )
      return c.html(
        <Layout title="Refused">
          <Notice kind="error">
            Console pages open only in their own tab. <a href="/console">Open the console</a>.
          </Notice>
        </Layout>,
        403,
      );
    await next();
  });

  const signIn = (c: Context<ConsoleEnv>, status: 200 | 401 | 403 | 400, flash?: Flash) =>
    c.html(
      <Layout title="Sign in" flash={flash}>
        <SignInPage />
      </Layout>,
      status,
    );

  con.get("/sign-in", async (c) => {
    const s = sessions.get(getCookie(c, CONSOLE_COOKIE));
    if (s && (await authenticate(c.var.deps, s.credential))) return c.redirect("/console", 303);
    const reason = c.req.query("signed-out");
    return signIn(
      c,
      200,
      reason === "expired"
        ? { kind: "warn", text: "Your session ended. Sign in again." }
        : reason === "1"
          ? { kind: "ok", text: "You are signed out." }
          : undefined,
    );
  });

  // Before sign-in nobody is known: the form is one short field, so read little.
  con.post(
    "/sign-in",
    bodyLimit({
      maxSize: MAX_SIGN_IN_BODY,
      onError: (c) => c.text("The sign-in form is too large.", 413),
    }),
  );
  con.post("/sign-in", async (c) => {
    if (!sameOrigin(c)) return signIn(c, 403, { kind: "error", text: "Sign-in must come from this page." });
    const form = await c.req.parseBody();
    const key = typeof form.apiKey === "string" ? form.apiKey.trim() : "";
    if (!/^[\x21-\x7e]{1,1024}$/.test(key)) {
      return signIn(c, 400, { kind: "error", text: "Enter an API key (or the admin token)." });
    }
    const principal = await authenticate(c.var.deps, key);
    if (!principal) return signIn(c, 401, { kind: "error", text: "That API key is not valid." });
    // A fresh id at every sign-in: a session id planted before sign-in is worth nothing.
    sessions.delete(getCookie(c, CONSOLE_COOKIE));
    const { id } = sessions.create(key);
    setCookie(c, CONSOLE_COOKIE, id, {
      httpOnly: true,
      sameSite: "Strict",
      path: "/console",
      secure: secureCookie(c),
      maxAge: Math.floor(sessions.absoluteMs / 1000),
    });
    return c.redirect("/console", 303);
  });

  // Everything below needs a live session; every POST a same-origin request with its CSRF token.
  con.use(
    createMiddleware<ConsoleEnv>(async (c, next) => {
      const id = getCookie(c, CONSOLE_COOKIE);
      // The progress view's refresh runs by itself: it must not keep an unattended session alive.
      const background = c.req.method === "GET" && c.req.path === "/console/progress/fragment";
      const session = sessions.get(id, { touch: !background });
      const principal = session ? await authenticate(c.var.deps, session.credential) : null;
      if (!session || !principal) {
        // A deleted API key signs its sessions out at their next request.
        if (session) sessions.delete(id);
        // Only a cookie that was sent is cleared: a cross-site form or link arrives without it
        // (SameSite=Strict), and must not sign the person out of the console.
        if (id !== undefined) deleteCookie(c, CONSOLE_COOKIE, { path: "/console" });
        // The console's front door is the sign-in form itself, not a redirect to it.
        if (
          (c.req.method === "GET" || c.req.method === "HEAD") &&
          (c.req.path === "/console" || c.req.path === "/console/")
        )
          return signIn(
            c,
            200,
            id ? { kind: "warn", text: "Your session ended. Sign in again." } : undefined,
          );
        if (c.req.method === "GET" || c.req.method === "HEAD")
          return c.redirect(`/console/sign-in${id ? "?signed-out=expired" : ""}`, 303);
        return c.html(
          <Layout title="Signed out">
            <Notice kind="error">
              Your session has ended. <a href="/console/sign-in">Sign in again</a>.
            </Notice>
          </Layout>,
          403,
        );
      }
      const viewer: Viewer = {
        role: principal.role,
        campaignId: principal.campaignId,
        actor: principal.actor,
        csrf: session.csrf,
      };
      c.set("viewer", viewer);
      c.set("session", session);
      c.set("sessions", sessions);
      c.set("api", apiClient(app, session.credential));
      c.set("form", {});
      if (c.req.method !== "GET" && c.req.method !== "HEAD") {
        const refuse = (why: string) =>
          c.html(
            <Layout title="Refused" viewer={viewer}>
              <Notice kind="error">{why}</Notice>
            </Layout>,
            403,
          );
        if (!sameOrigin(c)) return refuse("This form was sent from another site, so it was refused.");
        const type = c.req.header("content-type") ?? "";
        if (!type.startsWith("application/x-www-form-urlencoded") && !type.startsWith("multipart/form-data"))
          return refuse("Console forms are sent as HTML forms.");
        const form = (await c.req.parseBody({ all: true })) as ConsoleEnv["Variables"]["form"];
        const token = form.csrf;
        if (typeof token !== "string" || !safeEqual(token, session.csrf))
          return refuse(
            "The form had expired or did not come from the console. Reload the page and try again.",
          );
        c.set("form", form);
      }
      await next();
    }),
  );

  con.get("/", (c) => c.redirect(home(c.var.viewer), 303));
  con.post("/sign-out", (c) => {
    sessions.delete(getCookie(c, CONSOLE_COOKIE));
    deleteCookie(c, CONSOLE_COOKIE, { path: "/console" });
    return c.redirect("/console/sign-in?signed-out=1", 303);
  });

  registerLinkPages(con);
  registerProgressPages(con);
  registerContestPages(con);
  registerCampaignPages(con);
  registerAdminPages(con);
  registerAuditPages(con);

  con.all("*", (c) => page(c, "Not found", <p>There is no such console page.</p>, { status: 404 }));
  con.onError((err, c) => {
    // As the API: an unreachable database is 503 (the person may retry), never 500.
    const code = databaseUnavailableCode(err);
    const down = code !== undefined;
    if (down) c.var.deps.logger?.warn("console page: database unavailable", { method: c.req.method, code });
    else
      c.var.deps.logger?.error("console page failed", {
        error: err instanceof Error ? err.message : String(err),
      });
    return c.html(
      <Layout title={down ? "Unavailable" : "Something went wrong"}>
        <Notice kind="error">The page could not be shown. Try again shortly.</Notice>
      </Layout>,
      down ? 503 : 500,
    );
  });

  // `/console/` is the front door too (the router tells it from `/console`).
  app.get("/console/", (c) => c.redirect("/console", 303));
  app.route("/console", con as unknown as Hono<AppEnv>);
}
