import { createHash } from "node:crypto";
import type { ProblemCode } from "./errors.ts";
import { renderInline, renderMarkdown } from "./markdown.ts";

// A structural slice of an OpenAPI 3.1 document: just what the page shows.
interface OpenApiDoc {
  info: { title: string; version: string; description?: string };
  paths?: Record<string, Record<string, Operation | undefined> | undefined>;
  components?: { schemas?: Record<string, unknown> };
}
interface Operation {
  summary?: string;
  description?: string;
  tags?: string[];
  security?: Record<string, string[]>[];
  parameters?: {
    name: string;
    in: string;
    required?: boolean;
    description?: string;
    schema?: unknown;
    example?: unknown;
  }[];
  requestBody?: { content?: Record<string, { schema?: unknown; example?: unknown }> };
  responses?: Record<
    string,
    { description?: string; content?: Record<string, { schema?: unknown; example?: unknown }> }
  >;
}

/** Single-quoted for a POSIX shell. */
const shellQuote = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;

const exampleText = (v: unknown): string => (typeof v === "string" ? v : JSON.stringify(v));

// Paging and free-text parameters are left out of the examples: they would only add noise.
const OMIT_FROM_CURL = new Set(["cursor", "limit"]);

/**
 * `curl` command lines for an operation, built from its examples: one per request media type
 * (a CSV upload reads its file with `--data-binary @volunteers.csv`). Credentials are the
 * `$ADMIN_TOKEN` placeholder (the admin may call every route; an API key of the route's role
 * works the same way), the host `$TOKEN_SERVICE_URL`: never a real key.
 */
export function curlExamples(method: string, path: string, op: Operation): string[] {
  const params = op.parameters ?? [];
  let url = path;
  for (const p of params.filter((p) => p.in === "path")) {
    url = url.replace(`{${p.name}}`, encodeURIComponent(exampleText(p.example ?? p.name)));
  }
  const query = params
    .filter(
      (p) => p.in === "query" && !OMIT_FROM_CURL.has(p.name) && p.example !== undefined && p.example !== null,
    )
    .map((p) => `${encodeURIComponent(p.name)}=${encodeURIComponent(exampleText(p.example))}`);
  const secured = op.security !== undefined && op.security.length > 0;
  const head = (withQuery: boolean) => {
    const target = `$TOKEN_SERVICE_URL${url}${withQuery && query.length > 0 ? `?${query.join("&")}` : ""}`;
    const lines = [`curl${method === "get" ? "" : ` -X ${method.toUpperCase()}`} "${target}"`];
    if (secured) lines.push(`-H "Authorization: Bearer $ADMIN_TOKEN"`);
    return lines;
  };
  const content = Object.entries(op.requestBody?.content ?? {});
  if (content.length === 0) return [head(true).join(" \\\n  ")];
  const csvUpload = content.some(([type]) => type === "text/csv");
  return content.map(([type, media]) => {
    // With a CSV body the query carries the parameters; with JSON, the body does.
    const lines = head(type === "text/csv" || !csvUpload);
    lines.push(`-H "Content-Type: ${type}"`);
    if (type === "text/csv") lines.push("--data-binary @volunteers.csv");
    else if (media.example !== undefined) lines.push(`-d ${shellQuote(JSON.stringify(media.example))}`);
    return lines.join(" \\\n  ");
  });
}

const METHODS = ["get", "put", "post", "delete", "patch"] as const;

const escapeHtml = (s: string): string =>
  s.replace(
    /[&<>"']/g,
    (ch) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[ch]!,
  );

const refName = (schema: unknown): string | undefined => {
  const ref = (schema as { $ref?: unknown } | undefined)?.$ref;
  return typeof ref === "string" ? ref.split("/").pop() : undefined;
};

function schemaHtml(schema: unknown): string {
  const name = refName(schema);
  if (name) return `<a href="#schema-${escapeHtml(name)}"><code>${escapeHtml(name)}</code></a>`;
  return `<pre>${escapeHtml(JSON.stringify(schema, null, 2))}</pre>`;
}

const exampleHtml = (title: string, example: unknown): string =>
  `<details class="example"><summary>${escapeHtml(title)}</summary><pre>${escapeHtml(
    typeof example === "string" ? example : JSON.stringify(example, null, 2),
  )}</pre></details>`;

function operationHtml(method: string, path: string, op: Operation): string {
  const parts: string[] = [];
  const open = op.security === undefined || op.security.length === 0;
  parts.push(
    `<h3 id="${escapeHtml(`${method}-${path}`)}"><span class="m ${method}">${method.toUpperCase()}</span> <code>${escapeHtml(path)}</code>${open ? ' <span class="open">no auth</span>' : ""}</h3>`,
  );
  if (op.summary) parts.push(`<p><strong>${renderInline(op.summary)}</strong></p>`);
  if (op.description) parts.push(`<div class="md">${renderMarkdown(op.description)}</div>`);
  for (const curl of curlExamples(method, path, op)) {
    parts.push(`<pre class="curl"><code>${escapeHtml(curl)}</code></pre>`);
  }
  if (op.parameters?.length) {
    const rows = op.parameters
      .map(
        (p) =>
          `<tr><td><code>${escapeHtml(p.name)}</code></td><td>${escapeHtml(p.in)}</td><td>${p.required ? "yes" : "no"}</td><td>${renderInline(p.description ?? "")}</td></tr>`,
      )
      .join("");
    parts.push(`<table><tr><th>parameter</th><th>in</th><th>required</th><th></th></tr>${rows}</table>`);
  }
  for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) {
    parts.push(`<p>Request body <code>${escapeHtml(type)}</code>: ${schemaHtml(media.schema)}</p>`);
    if (media.example !== undefined) parts.push(exampleHtml("Example request", media.example));
  }
  const ok = Object.entries(op.responses ?? {}).find(([status]) => status.startsWith("2"));
  for (const [type, media] of Object.entries(ok?.[1].content ?? {})) {
    if (media.example !== undefined)
      parts.push(exampleHtml(`Example answer (${ok![0]}, ${type})`, media.example));
  }
  const responses = Object.entries(op.responses ?? {})
    .map(([status, r]) => {
      const media = Object.entries(r.content ?? {})
        .map(([type, m]) => `<code>${escapeHtml(type)}</code> ${m.schema ? schemaHtml(m.schema) : ""}`)
        .join("<br>");
      return `<tr><td>${escapeHtml(status)}</td><td>${renderInline(r.description ?? "")}</td><td>${media}</td></tr>`;
    })
    .join("");
  if (responses)
    parts.push(`<table><tr><th>status</th><th>meaning</th><th>body</th></tr>${responses}</table>`);
  return `<section class="op">${parts.join("\n")}</section>`;
}

/** The docs page's only stylesheet; its CSP allows it by hash (`DOCS_CSP`), nothing else. */
export const DOCS_STYLE = `
body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}
code,pre{font-family:ui-monospace,monospace;font-size:13px}
pre{background:#f5f5f5;padding:.5rem;overflow:auto;max-height:24rem}
pre.curl{background:#1b1b1b;color:#f5f5f5}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
.op{border-top:1px solid #ccc;padding-top:.5rem}.m{display:inline-block;min-width:4rem;font-weight:bold}
.get{color:#05668d}.put{color:#7a4f01}.post{color:#2d6a4f}.delete{color:#9d0208}.open{font-size:12px;color:#666}
`;

/** The docs page's CSP: no script at all, the one stylesheet by hash, never framed. */
export const DOCS_CSP = `default-src 'none'; style-src 'sha256-${createHash("sha256").update(DOCS_STYLE, "utf8").digest("base64")}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`;

/**
 * A self-contained HTML reference rendered from the OpenAPI document: no scripts and nothing
 * fetched from elsewhere, so it can be served under a CSP of `default-src 'none'`.
 */
export function renderDocsPage(doc: OpenApiDoc, problemCodes: readonly ProblemCode[]): string {
  const ops: string[] = [];
  const toc: string[] = [];
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    for (const method of METHODS) {
      const op = item?.[method];
      if (!op) continue;
      toc.push(
        `<li><a href="#${escapeHtml(`${method}-${path}`)}">${method.toUpperCase()} ${escapeHtml(path)}</a></li>`,
      );
      ops.push(operationHtml(method, path, op));
    }
  }
  const schemas = Object.entries(doc.components?.schemas ?? {})
    .map(([name, s]) => `<h3 id="schema-${escapeHtml(name)}">${escapeHtml(name)}</h3>${schemaHtml(s)}`)
    .join("\n");
  const codes = problemCodes
    .map((c) => `<li id="problem-${escapeHtml(c)}"><code>urn:phaselock:problem:${escapeHtml(c)}</code></li>`)
    .join("");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(doc.info.title)} ${escapeHtml(doc.info.version)}</title>
<style>${DOCS_STYLE}</style>
</head>
<body>
<h1>${escapeHtml(doc.info.title)} <small>${escapeHtml(doc.info.version)}</small></h1>
${renderMarkdown(doc.info.description ?? "")}
<p>The examples read the service's address from <code>$TOKEN_SERVICE_URL</code> and the credential from <code>$ADMIN_TOKEN</code> (or an API key of the route's role): set them in your shell first.</p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a>.</p>
<h2>Routes</h2>
<ul>${toc.join("")}</ul>
${ops.join("\n")}
<h2>Problem types</h2>
<p>Errors are <code>application/problem+json</code> (RFC 9457); branch on <code>code</code>.</p>
<ul>${codes}</ul>
<h2>Schemas</h2>
${schemas}
</body>
</html>
`;
}
