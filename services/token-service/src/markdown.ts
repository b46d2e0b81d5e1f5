/**
 * A small Markdown renderer for the OpenAPI descriptions shown on `/docs`: paragraphs, `-` lists,
 * `code`, **bold** and [links](https://…). The text is HTML-escaped before any markup is added,
 * so nothing in a description can inject a tag; links take only http(s), relative and `#` URLs.
 */

const escapeHtml = (s: string): string =>
  s.replace(
    /[&<>"']/g,
    (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch]!,
  );

const SAFE_URL = /^(https?:\/\/[^\s]+|\/[^\s]*|#[^\s]*)$/;

/** Inline markup of one already-split text run (no code spans inside). */
function inlineText(text: string): string {
  let out = escapeHtml(text);
  out = out.replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>");
  out = out.replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (whole, label: string, url: string) => {
    // `url` is escaped already; the check reads it as the author wrote it.
    const raw = url.replaceAll("&amp;", "&");
    return SAFE_URL.test(raw) ? `<a href="${url}">${label}</a>` : whole;
  });
  return out;
}

/** Inline Markdown: code spans are taken first, so nothing inside them is formatted. */
export function renderInline(text: string): string {
  return text
    .split(/(`[^`]*`)/)
    .map((part) =>
      part.length >= 2 && part.startsWith("`") && part.endsWith("`")
        ? `<code>${escapeHtml(part.slice(1, -1))}</code>`
        : inlineText(part),
    )
    .join("");
}

/** Block Markdown: blank-line separated paragraphs, and lists of lines starting `- ` or `* `. */
export function renderMarkdown(src: string): string {
  const blocks = src.replace(/\r\n?/g, "\n").split(/\n\s*\n/);
  return blocks
    .map((block) => block.trim())
    .filter((block) => block.length > 0)
    .map((block) => {
      const lines = block.split("\n");
      if (lines.every((l) => /^\s*[-*] /.test(l))) {
        return `<ul>${lines.map((l) => `<li>${renderInline(l.replace(/^\s*[-*] /, ""))}</li>`).join("")}</ul>`;
      }
      // A list after a lead-in line, with no blank line between.
      const firstItem = lines.findIndex((l) => /^\s*[-*] /.test(l));
      if (firstItem > 0 && lines.slice(firstItem).every((l) => /^\s*[-*] /.test(l))) {
        return `<p>${renderInline(lines.slice(0, firstItem).join(" "))}</p><ul>${lines
          .slice(firstItem)
          .map((l) => `<li>${renderInline(l.replace(/^\s*[-*] /, ""))}</li>`)
          .join("")}</ul>`;
      }
      return `<p>${renderInline(lines.join(" "))}</p>`;
    })
    .join("\n");
}
