import { createHash } from "node:crypto";

// The one look of every page a volunteer sees: the gateway's landing, refusal and signed-out pages
// and the demo phone bank's calling page. Both services render pages with this module, so they
// cannot drift apart. Everything is inline (the phone bank is the gateway's upstream and cannot
// load the gateway's assets), and allowed by hash in each page's CSP: no external assets, and no
// script or style runs that is not one of these strings.

/** The volunteer pages' stylesheet. Colours meet WCAG AA contrast on their backgrounds. */
export const VOLUNTEER_STYLE = `
:root { color-scheme: light; --accent: #0b6e4f; --accent-dark: #08513a; --ink: #1b1b1b; --muted: #4d4d4d;
  --paper: #ffffff; --ground: #f2f4f1; --line: #c9cfc8; --alert: #a4161a; --alert-ground: #fdf0f0; }
* { box-sizing: border-box; }
body { margin: 0; font: 17px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
  background: var(--ground); }
.pl-top { background: var(--accent); color: #fff; padding: 0.75rem 1rem; font-weight: 600; }
.pl-top span { display: block; max-width: 34rem; margin: 0 auto; }
main { max-width: 34rem; margin: 1rem auto; padding: 1.25rem; background: var(--paper); border-radius: 0.75rem;
  box-shadow: 0 1px 3px rgba(0, 0, 0, 0.12); }
@media (max-width: 36rem) { main { margin: 0; border-radius: 0; box-shadow: none; } }
h1 { font-size: 1.4rem; margin: 0 0 0.75rem; line-height: 1.25; }
h2 { font-size: 1.25rem; margin: 0 0 0.25rem; }
p { margin: 0.5rem 0; }
dl { display: grid; grid-template-columns: auto 1fr; gap: 0.25rem 1rem; margin: 0.75rem 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
.note, .muted { color: var(--muted); font-size: 0.95rem; }
.ask { border-left: 4px solid var(--accent); padding: 0.25rem 0 0.25rem 0.75rem; margin: 1rem 0; }
.ask strong { overflow-wrap: anywhere; }
button { font: inherit; min-height: 3rem; padding: 0.75rem 1rem; border-radius: 0.5rem; cursor: pointer;
  border: 2px solid var(--accent); background: var(--paper); color: var(--accent-dark); font-weight: 600; }
button:focus-visible, a:focus-visible, textarea:focus-visible { outline: 3px solid #1d4ed8; outline-offset: 2px; }
button:disabled { opacity: 0.55; cursor: default; }
.primary { width: 100%; background: var(--accent); color: #fff; font-size: 1.15rem; }
.primary:hover:not(:disabled) { background: var(--accent-dark); border-color: var(--accent-dark); }
.secondary { width: 100%; margin-top: 0.75rem; }
.refusal { border: 2px solid var(--alert); background: var(--alert-ground); border-radius: 0.75rem;
  padding: 1rem; margin: 1rem 0; }
.refusal h1, .refusal h2 { color: var(--alert); }
.error { color: var(--alert); font-weight: 600; }
.card { border: 1px solid var(--line); border-radius: 0.75rem; padding: 1rem; margin: 1rem 0; }
.phone { display: inline-block; font-size: 1.5rem; font-weight: 600; margin: 0.25rem 0; color: var(--ink); }
label { display: block; font-weight: 600; margin-top: 0.75rem; }
textarea { width: 100%; font: inherit; min-height: 5rem; margin-top: 0.25rem; padding: 0.5rem;
  border: 1px solid #767676; border-radius: 0.5rem; }
.outcomes { display: grid; grid-template-columns: 1fr 1fr; gap: 0.5rem; margin: 0.5rem 0 0; }
#status { min-height: 1.5rem; }
`;

/**
 * Shows every `<time datetime>` in the device's own time zone and language. The server writes the
 * time in UTC (readable without JavaScript); the UTC text stays available as the element's title.
 */
export const LOCAL_TIME_SCRIPT = `
"use strict";
(function () {
  var format;
  try {
    format = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short",
      year: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
  } catch (e) { return; }
  var times = document.querySelectorAll("time[datetime]");
  for (var i = 0; i < times.length; i++) {
    var d = new Date(times[i].getAttribute("datetime"));
    if (isNaN(d.getTime())) continue;
    times[i].title = times[i].textContent;
    times[i].textContent = format.format(d);
  }
})();
`;

/** The CSP source of an inline script or style: `'sha256-…'`. */
export const cspHash = (text: string): string =>
  `'sha256-${createHash("sha256").update(text, "utf8").digest("base64")}'`;

/**
 * The CSP of a volunteer page: nothing loads from anywhere else, only the shared stylesheet and
 * the given inline scripts run, forms post to the same origin, and no one may frame the page.
 * `connect`: the page's script fetches from its own origin.
 */
export function volunteerCsp(scripts: readonly string[], opts: { connect?: boolean } = {}): string {
  return [
    "default-src 'none'",
    `script-src ${scripts.map(cspHash).join(" ") || "'none'"}`,
    `style-src ${cspHash(VOLUNTEER_STYLE)}`,
    ...(opts.connect ? ["connect-src 'self'"] : []),
    "img-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join("; ");
}

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

const UTC = new Intl.DateTimeFormat("en-GB", {
  timeZone: "UTC",
  weekday: "short",
  day: "numeric",
  month: "short",
  year: "numeric",
  hour: "2-digit",
  minute: "2-digit",
  hourCycle: "h23",
});

/** A time as readable UTC text, e.g. `Sun 1 Mar 2020, 12:00 UTC`: what a page shows without script. */
export const utcText = (d: Date): string => `${UTC.format(d).replace(/,(?= \d{1,2} )/, "")} UTC`;

/** A `<time>` the local-time script converts to the volunteer's own time zone. */
export const timeHtml = (d: Date): string => `<time datetime="${d.toISOString()}">${utcText(d)}</time>`;

/** Whom to ask when no contact is known. */
export const FALLBACK_CONTACT = "the coordinator who sent you the link";

/**
 * The sentence naming whom to ask: the campaign's contact when it has one, else the coordinator
 * who sent the link. `lead` starts the sentence ("If you think this is a mistake, ask").
 */
export function askHtml(contact: string | undefined | null, lead = "If you have a question, ask"): string {
  const whom = contact ? `<strong>${escapeHtml(contact)}</strong>` : escapeHtml(FALLBACK_CONTACT);
  return `<p class="ask">${escapeHtml(lead)} ${whom}.</p>`;
}

export interface PageOptions {
  title: string;
  /** the page's HTML inside `<main>`, escaped by the caller */
  body: string;
  /** inline scripts, each allowed by hash in {@link volunteerCsp}; default: the local-time script */
  scripts?: readonly string[];
}

/** A whole volunteer page: phone-first, self-contained, the shared look. */
export function renderPage({ title, body, scripts = [LOCAL_TIME_SCRIPT] }: PageOptions): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${escapeHtml(title)}</title>
<style>${VOLUNTEER_STYLE}</style>
</head>
<body>
<header class="pl-top"><span>Phone bank</span></header>
<main>
${body}
</main>
${scripts.map((s) => `<script>${s}</script>`).join("\n")}
</body>
</html>
`;
}
