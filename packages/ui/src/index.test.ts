import { describe, expect, it } from "vitest";
import {
  askHtml,
  cspHash,
  escapeHtml,
  FALLBACK_CONTACT,
  LOCAL_TIME_SCRIPT,
  renderPage,
  timeHtml,
  utcText,
  VOLUNTEER_STYLE,
  volunteerCsp,
} from "./index.ts";

describe("the volunteer pages' shared look", () => {
  it("renders a self-contained page whose style and scripts the CSP allows by hash, and nothing else", () => {
    const html = renderPage({ title: "A <title>", body: "<p>hi</p>" });
    expect(html).toContain("<title>A &#60;title&#62;</title>");
    expect(html).toContain(`<style>${VOLUNTEER_STYLE}</style>`);
    expect(html).toContain(`<script>${LOCAL_TIME_SCRIPT}</script>`);
    expect(html).toContain('name="viewport"');
    expect(html).not.toMatch(/\b(src|href)=/i);
    const csp = volunteerCsp([LOCAL_TIME_SCRIPT]);
    expect(csp).toBe(
      [
        "default-src 'none'",
        `script-src ${cspHash(LOCAL_TIME_SCRIPT)}`,
        `style-src ${cspHash(VOLUNTEER_STYLE)}`,
        "img-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
      ].join("; "),
    );
    expect(volunteerCsp([], { connect: true })).toContain("script-src 'none'; style-src");
    expect(volunteerCsp([], { connect: true })).toContain("connect-src 'self'");
  });

  it("hashes as CSP does: sha256 of the UTF-8 text, base64", () => {
    // echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64
    expect(cspHash("alert(1)")).toBe("'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='");
  });

  it("writes times in UTC for the page without script, and as ISO for the local-time script", () => {
    const d = new Date("2020-03-01T09:05:00Z");
    expect(utcText(d)).toBe("Sun 1 Mar 2020, 09:05 UTC");
    expect(timeHtml(d)).toBe('<time datetime="2020-03-01T09:05:00.000Z">Sun 1 Mar 2020, 09:05 UTC</time>');
  });

  it("names the contact, escaped, or the coordinator who sent the link", () => {
    expect(askHtml("Jo <jo@example.org>")).toBe(
      '<p class="ask">If you have a question, ask <strong>Jo &#60;jo@example.org&#62;</strong>.</p>',
    );
    expect(askHtml(undefined, "If this keeps happening, ask")).toBe(
      `<p class="ask">If this keeps happening, ask ${FALLBACK_CONTACT}.</p>`,
    );
    expect(askHtml(null)).toContain(FALLBACK_CONTACT);
    expect(escapeHtml(`&<>"'`)).toBe("&#38;&#60;&#62;&#34;&#39;");
  });
});
