import { askHtml, renderPage, volunteerCsp } from "@phaselock/ui";
import type { Hono } from "hono";
import type { PhonebankEnv } from "../deps.ts";

// The calling page: one HTML document, no external assets, works on a phone, in the volunteer
// pages' shared look (@phaselock/ui). Its script and style are inline and allowed by hash in the
// CSP, so nothing else can run on the page.

const SCRIPT = `
"use strict";
(function () {
  // Relative URLs, so the page works wherever it is mounted (the gateway serves it under /pb/).
  var path = location.pathname;
  var base = path.endsWith("/") ? "" : path.slice(path.lastIndexOf("/") + 1) + "/";
  var el = function (id) { return document.getElementById(id); };
  var current = null;
  var stopped = false;
  // What the gateway answers when it refuses the session: member data must leave the screen.
  var REFUSED = { 401: "Calling has stopped", 403: "Calling has stopped", 429: "Slow down a little",
    503: "Temporarily unavailable" };

  function status(text, isError) {
    var s = el("status");
    s.textContent = text;
    s.className = isError ? "error" : "muted";
  }

  function busy(on) {
    el("next").disabled = on || stopped;
    var buttons = document.querySelectorAll("[data-outcome]");
    for (var i = 0; i < buttons.length; i++) buttons[i].disabled = on || !current || stopped;
  }

  function clearMember() {
    current = null;
    el("name").textContent = "";
    var phone = el("phone");
    phone.textContent = "";
    phone.removeAttribute("href");
    el("where").textContent = "";
    el("notes").value = "";
    el("card").hidden = true;
  }

  // The gateway's refusals carry the words its refusal page would show a volunteer in the
  // Phaselock-Volunteer-Message header, its heading in Phaselock-Volunteer-Title (both
  // percent-encoded); message is for API clients. The phone bank's own errors have a message only.
  function fromGateway(res, name) {
    var header = res.headers.get(name);
    if (header) {
      try { return decodeURIComponent(header); } catch (e) { /* malformed: fall back */ }
    }
    return "";
  }
  function words(res, error) {
    return fromGateway(res, "phaselock-volunteer-message") || (error && error.message);
  }

  function refused(res, error) {
    clearMember();
    // 429 and 503 pass; 401 and 403 end this session for good.
    if (res.status === 401 || res.status === 403) stopped = true;
    // The gateway's heading where it sent one ("Your campaign has reached its limit for now").
    el("refused-title").textContent = fromGateway(res, "phaselock-volunteer-title") || REFUSED[res.status];
    el("refused-message").textContent = words(res, error) || "Calling cannot go on from this page right now.";
    el("refused-code").textContent = (error && error.code) || String(res.status);
    el("refused").hidden = false;
    status("");
    el("refused-title").focus();
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
      var error = data && data.error;
      if (REFUSED[res.status]) {
        refused(res, error);
        return null;
      }
      throw new Error(words(res, error) || "Something went wrong (" + res.status + ").");
    }
    el("refused").hidden = true;
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
      if (data) {
        show(data.call);
        status("Call " + data.call.member.name + ", write any notes, then choose what happened.");
      }
    } catch (e) {
      clearMember();
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
        var saved = await api("calls/" + encodeURIComponent(current.id) + "/outcome", body);
        if (saved) {
          clearMember();
          status("Saved. Press Next call when you are ready.");
        }
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

/** Nothing loads from anywhere else; only the shared style and this script run; fetches stay same-origin. */
export const PAGE_CSP = volunteerCsp([SCRIPT], { connect: true });

/**
 * The calling page. The notes box comes before the outcome buttons, which save at once; the
 * refusal box (hidden) already names whom to ask, so the script only fills in what happened.
 */
export function pageHtml(contact: string | null): string {
  return renderPage({
    title: "Phone bank: calling",
    scripts: [SCRIPT],
    body: `<h1>Calling</h1>
<p class="muted">Demo data: synthetic members, not real people.</p>
<section id="refused" class="refusal" hidden role="alert" aria-labelledby="refused-title">
<h2 id="refused-title" tabindex="-1">Calling has stopped</h2>
<p id="refused-message"></p>
${askHtml(contact, "If you think this is a mistake, ask")}
<p class="note">Reference: <span id="refused-code"></span></p>
</section>
<section id="card" class="card" hidden aria-labelledby="name">
<h2 id="name"></h2>
<a id="phone" class="phone"></a>
<p id="where" class="muted"></p>
<label for="notes">Notes (optional)</label>
<textarea id="notes" maxlength="1000" aria-describedby="notes-hint"></textarea>
<p id="notes-hint" class="note">Write notes first: choosing what happened saves the call at once, with its notes.</p>
<div class="outcomes" role="group" aria-label="What happened">
<button type="button" data-outcome="answered">Answered</button>
<button type="button" data-outcome="no_answer">No answer</button>
<button type="button" data-outcome="refused">Refused</button>
<button type="button" data-outcome="wrong_number">Wrong number</button>
</div>
</section>
<p id="status" class="muted" role="status"></p>
<button type="button" id="next" class="primary">Next call</button>
<form method="post" action="_phaselock/session/end"><button type="submit" class="secondary">End session</button></form>
<p class="note">End session signs this device out. To call again, open your link.</p>`,
  });
}

export function registerPage(app: Hono<PhonebankEnv>) {
  app.get("/", (c) => {
    c.header("content-security-policy", PAGE_CSP);
    return c.html(pageHtml(c.var.gateway.contact));
  });
}
