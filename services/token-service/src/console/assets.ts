/**
 * The console's only stylesheet and script, served by the app itself (same origin: the CSP
 * allows nothing else). Plain CSS and plain JS, no build step: every form works without the
 * script, which only adds copy buttons, confirmation prompts and a live progress table.
 */

export const CONSOLE_CSS = `
:root { --ink:#1a1a1a; --muted:#4a4a4a; --line:#c8c8c8; --bg:#fff; --panel:#f4f6f8; --accent:#0b5394;
  --danger:#a4161a; --ok:#1e6b34; --warn:#7a4b00; font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
* { box-sizing: border-box; }
body { margin:0; color:var(--ink); background:var(--bg); line-height:1.45; font-size:16px; }
a { color:var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, [tabindex]:focus-visible { outline:3px solid #0b2545; outline-offset:2px; }
/* Amber only against the dark header (the skip link shows over it): on the white page it is 2:1, under WCAG's 3:1. */
header.top :focus-visible, .skip:focus-visible { outline-color:#f2a900; }
.skip { position:absolute; left:-999px; } .skip:focus { left:8px; top:8px; background:#fff; padding:4px 8px; z-index:2; }
header.top { background:#0b2545; color:#fff; padding:.5rem 1rem; display:flex; flex-wrap:wrap; gap:.5rem 1rem; align-items:center; }
header.top .brand { font-weight:700; color:#fff; text-decoration:none; margin-right:auto; }
header.top nav ul { list-style:none; margin:0; padding:0; display:flex; flex-wrap:wrap; gap:.25rem .9rem; }
header.top nav a { color:#fff; }
header.top nav a[aria-current="page"] { font-weight:700; text-decoration-thickness:3px; }
header.top form { margin:0; }
header.top .who { font-size:.9rem; }
main { max-width:72rem; margin:0 auto; padding:1rem; overflow-wrap:break-word; }
h1 { font-size:1.6rem; margin:.5rem 0 1rem; } h2 { font-size:1.25rem; margin:1.5rem 0 .5rem; }
fieldset { border:1px solid var(--line); border-radius:6px; padding:.75rem 1rem; margin:0 0 1rem; }
legend { font-weight:600; padding:0 .25rem; }
label { display:block; font-weight:600; margin:.5rem 0 .2rem; }
label.inline { display:inline-flex; gap:.35rem; align-items:center; font-weight:400; margin-right:1rem; }
.hint { color:var(--muted); font-size:.9rem; margin:.1rem 0 .4rem; }
input[type=text], input[type=password], input[type=number], input[type=search], input[type=datetime-local], select, input[type=file] {
  font:inherit; padding:.45rem .5rem; border:1px solid #767676; border-radius:4px; width:100%; max-width:28rem; background:#fff; color:var(--ink); }
button, .button { font:inherit; display:inline-block; padding:.45rem .9rem; border-radius:4px; border:1px solid var(--accent);
  background:var(--accent); color:#fff; cursor:pointer; text-decoration:none; min-height:2.5rem; }
button.secondary, .button.secondary { background:#fff; color:var(--accent); }
button.danger { background:var(--danger); border-color:var(--danger); }
button.small { padding:.2rem .6rem; min-height:2rem; font-size:.9rem; }
.actions { display:flex; flex-wrap:wrap; gap:.5rem; align-items:center; margin:.75rem 0; }
.filters { display:flex; flex-wrap:wrap; gap:.5rem 1rem; align-items:flex-end; }
.filters > div { flex:1 1 12rem; } .filters label { margin-top:0; }
.notice { border-left:6px solid var(--accent); background:var(--panel); padding:.6rem .9rem; margin:0 0 1rem; overflow-wrap:anywhere; }
.notice.ok { border-color:var(--ok); } .notice.error { border-color:var(--danger); } .notice.warn { border-color:var(--warn); }
.notice ul { margin:.3rem 0 0; padding-left:1.2rem; }
.table-wrap { overflow-x:auto; margin:.5rem 0 1rem; border:1px solid var(--line); border-radius:6px; }
table { border-collapse:collapse; width:100%; font-size:.95rem; }
th, td { text-align:left; padding:.4rem .6rem; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:var(--panel); white-space:nowrap; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; }
td form { margin:0; display:inline; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:.9em; word-break:break-all; }
.status { font-weight:600; } .status-active { color:var(--ok); } .status-revoked, .status-deny { color:var(--danger); }
.status-expired, .status-exhausted, .status-suspended { color:var(--warn); }
.secret { background:#fff8e1; border:2px dashed var(--warn); padding:.6rem; word-break:break-all; }
.timeline { overflow-x:auto; margin:.5rem 0; }
.timeline svg { width:100%; height:auto; max-width:45rem; display:block; }
.cards { display:grid; grid-template-columns:repeat(auto-fit, minmax(10rem, 1fr)); gap:.75rem; margin:0 0 1rem; }
.card { background:var(--panel); border-radius:6px; padding:.6rem .8rem; } .card b { display:block; font-size:1.5rem; }
.copy[hidden] { display:none; }
@media (max-width: 40rem) {
  main { padding:.75rem; } h1 { font-size:1.35rem; }
  table.stack thead { position:absolute; left:-9999px; }
  table.stack tr { display:block; border-bottom:2px solid var(--line); padding:.3rem 0; }
  table.stack td { display:flex; gap:.5rem; border:0; padding:.2rem .6rem; }
  table.stack td::before { content: attr(data-label); font-weight:600; min-width:7.5rem; flex:none; }
  table.stack td.num { text-align:left; }
  table.stack th[scope="row"] { display:block; border:0; background:none; padding:.3rem .6rem; }
  .timeline svg { min-width:36rem; }
}
`;

export const CONSOLE_JS = `
(function () {
  "use strict";
  // Copy buttons: hidden until this script runs (they need it).
  document.querySelectorAll("button[data-copy]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () {
      var text = b.getAttribute("data-copy") || "";
      var done = function () { var was = b.textContent; b.textContent = "Copied"; setTimeout(function () { b.textContent = was; }, 1500); };
      if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(text).then(done, function () {});
    });
  });
  // Live regions that refresh from an HTML fragment of the same page.
  document.querySelectorAll("[data-refresh]").forEach(function (el) {
    var src = el.getAttribute("data-refresh");
    var every = Number(el.getAttribute("data-every") || "5000");
    if (!src) return;
    setInterval(function () {
      fetch(src, { credentials: "same-origin", headers: { accept: "text/html" } })
        .then(function (r) {
          // The session ended (the console redirects to its sign-in page): go there, rather than
          // pour a whole page into the table.
          if (r.redirected) { window.location.assign(r.url); return null; }
          if (r.ok) return r.text();
          throw new Error(String(r.status));
        })
        .then(function (html) {
          if (html === null) return;
          // Swapped only when something besides the "Updated" time changed: a swap moves focus out
          // of the table and hands a screen reader the whole region again, every few seconds.
          var next = document.createElement("template");
          next.innerHTML = html;
          var stamp = el.querySelector("[data-stamp]");
          var nextStamp = next.content.querySelector("[data-stamp]");
          var textOf = function (root) {
            var copy = root.cloneNode(true);
            var s = copy.querySelector("[data-stamp]");
            if (s) s.remove();
            return copy.textContent;
          };
          if (stamp && nextStamp && textOf(next.content) === textOf(el)) stamp.textContent = nextStamp.textContent;
          else el.innerHTML = html;
        })
        .catch(function () {});
    }, every);
  });
})();
`;
