import { createHash } from "node:crypto";
import type { Hono } from "hono";
import type { PhonebankEnv } from "../deps.ts";

// The calling page: one HTML document, no external assets, works on a phone. Its script and
// style are inline and allowed by hash in the CSP, so nothing else can run on the page.

const STYLE = `
:root { color-scheme: light dark; --accent: #c8102e; --muted: #666; }
* { box-sizing: border-box; }
body { margin: 0; font: 17px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
main { max-width: 34rem; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.4rem; margin: 0.5rem 0; }
.muted { color: var(--muted); font-size: 0.9rem; }
.card { border: 1px solid #ccc; border-radius: 0.75rem; padding: 1rem; margin: 1rem 0; }
.card h2 { margin: 0 0 0.25rem; font-size: 1.3rem; }
.phone { display: inline-block; font-size: 1.5rem; font-weight: 600; margin: 0.25rem 0; color: inherit; }
button { font: inherit; border-radius: 0.5rem; border: 1px solid #999; padding: 0.75rem 1rem; min-height: 3rem; cursor: pointer; }
button:disabled { opacity: 0.5; cursor: default; }
.primary { width: 100%; background: var(--accent); border-color: var(--accent); color: #fff; font-weight: 600; }
.outcomes { display: grid; grid-template-columns: 1fr 1fr; gap: 0.5rem; margin: 0.75rem 0; }
textarea { width: 100%; font: inherit; min-height: 4rem; margin-top: 0.25rem; }
#status { min-height: 1.5rem; }
.error { color: var(--accent); font-weight: 600; }
`;

const SCRIPT = `
"use strict";
(function () {
  // Relative URLs, so the page works wherever it is mounted (the gateway serves it under /pb/).
  var path = location.pathname;
  var base = path.endsWith("/") ? "" : path.slice(path.lastIndexOf("/") + 1) + "/";
  var el = function (id) { return document.getElementById(id); };
  var current = null;

  function status(text, isError) {
    var s = el("status");
    s.textContent = text;
    s.className = isError ? "error" : "muted";
  }

  function busy(on) {
    el("next").disabled = on;
    var buttons = document.querySelectorAll("[data-outcome]");
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = on || !current;
  }

  async function api(rel, body) {
    var init = { credentials: "same-origin", headers: { accept: "application/json" } };
    if (body !== undefined) {
      init.method = "POST";
      init.headers["content-type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    var res = await fetch(base + rel, init);
    var data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      var message = data && data.error && data.error.message;
      throw new Error(message || "Something went wrong (" + res.status + ").");
    }
    return data;
  }

  function show(call) {
    current = call;
    var m = call.member;
    el("name").textContent = m.name;
    var phone = el("phone");
    phone.textContent = m.phone;
    phone.href = "tel:" + String(m.phone).replace(/[^0-9+]/g, "");
    el("where").textContent = [m.ward, m.constituency].filter(Boolean).join(", ");
    el("notes").value = "";
    el("card").hidden = false;
  }

  el("next").addEventListener("click", async function () {
    busy(true);
    status("Finding the next member…");
    try {
      var data = await api("calls/next");
      show(data.call);
      status("Call " + data.call.member.name + ", then record what happened.");
    } catch (e) {
      current = null;
      status(e.message, true);
    } finally {
      busy(false);
    }
  });

  var buttons = document.querySelectorAll("[data-outcome]");
  for (var i = 0; i < buttons.length; i++) {
    buttons[i].addEventListener("click", async function (event) {
      if (!current) return;
      var outcome = event.currentTarget.getAttribute("data-outcome");
      var notes = el("notes").value.trim();
      var body = notes ? { outcome: outcome, notes: notes } : { outcome: outcome };
      busy(true);
      try {
        await api("calls/" + encodeURIComponent(current.id) + "/outcome", body);
        current = null;
        el("card").hidden = true;
        status("Saved. Press Next call when you are ready.");
      } catch (e) {
        status(e.message, true);
      } finally {
        busy(false);
      }
    });
  }
  busy(false);
})();
`;

const sha256 = (s: string) => `'sha256-${createHash("sha256").update(s).digest("base64")}'`;

/** Nothing loads from anywhere else; only our inline script and style run; fetches stay same-origin. */
export const PAGE_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "img-src 'none'",
  "base-uri 'none'",
  // The one form posts to the gateway's own session end, beside this page under /pb/.
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Phone bank</title>
<style>${STYLE}</style>
</head>
<body>
<main>
<h1>Phone bank</h1>
<p class="muted">Demo data: synthetic members, not real people.</p>
<section id="card" class="card" hidden aria-live="polite">
<h2 id="name"></h2>
<a id="phone" class="phone" href="#"></a>
<p id="where" class="muted"></p>
<div class="outcomes">
<button type="button" data-outcome="answered">Answered</button>
<button type="button" data-outcome="no_answer">No answer</button>
<button type="button" data-outcome="refused">Refused</button>
<button type="button" data-outcome="wrong_number">Wrong number</button>
</div>
<label for="notes" class="muted">Notes (optional)</label>
<textarea id="notes" maxlength="1000"></textarea>
</section>
<p id="status" class="muted" role="status"></p>
<button type="button" id="next" class="primary">Next call</button>
<form method="post" action="_phaselock/session/end"><button type="submit">End session on this device</button></form>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`;

export function registerPage(app: Hono<PhonebankEnv>) {
  app.get("/", (c) => {
    c.header("content-security-policy", PAGE_CSP);
    return c.html(PAGE_HTML);
  });
}
