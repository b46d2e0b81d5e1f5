import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { curlExamples } from "./docs-page.ts";
import { renderMarkdown } from "./markdown.ts";
import { ADMIN, call, callJson, createHarness, type Harness } from "./test-support.ts";

type Media = { schema?: unknown; example?: unknown };
type Op = {
  parameters?: { name: string; in: string; example?: unknown }[];
  requestBody?: { content?: Record<string, Media> };
  responses?: Record<string, { content?: Record<string, Media> }>;
  security?: unknown[];
};
type Doc = { paths: Record<string, Record<string, Op>> };

let h: Harness;
let doc: Doc;
let html: string;
beforeAll(async () => {
  h = await createHarness();
  doc = (await callJson<Doc>(h, "GET", "/openapi.json", { token: null })).body;
  html = await (await call(h, "GET", "/docs", { token: null })).text();
}, 60_000);
afterAll(() => h.close());

const operations = () =>
  Object.entries(doc.paths).flatMap(([path, item]) =>
    Object.entries(item).map(([method, op]) => ({ method, path, op })),
  );

describe("OpenAPI patterns", () => {
  const patterns = (node: unknown, at: string, out: { at: string; pattern: string }[] = []) => {
    if (node !== null && typeof node === "object") {
      for (const [key, value] of Object.entries(node)) {
        if (key === "pattern" && typeof value === "string") out.push({ at, pattern: value });
        else patterns(value, `${at}/${key}`, out);
      }
    }
    return out;
  };

  it("every pattern is a JSON Schema regex (ECMA-262, Unicode): no leftover /flags, and it compiles", () => {
    const all = patterns(doc, "#");
    expect(all.length).toBeGreaterThan(10);
    const bad = all.filter(({ pattern }) => {
      try {
        new RegExp(pattern, "u");
      } catch {
        return true;
      }
      return /(?<!\\)\/[dgimsuvy]*$/.test(pattern);
    });
    expect(bad).toEqual([]);
  });

  it("a nullable member admits null: no allOf of a schema and a null type (which no null satisfies)", () => {
    const bad: string[] = [];
    const walk = (node: unknown, at: string) => {
      if (node === null || typeof node !== "object") return;
      const all = (node as { allOf?: { type?: unknown; $ref?: string }[] }).allOf;
      if (all?.some((s) => ([] as unknown[]).concat(s.type ?? []).includes("null"))) bad.push(at);
      for (const [key, value] of Object.entries(node)) walk(value, `${at}/${key}`);
    };
    walk(doc, "#");
    expect(bad).toEqual([]);
    const contest = (
      doc as unknown as {
        components: { schemas: Record<string, { properties: Record<string, { anyOf?: unknown[] }> }> };
      }
    ).components.schemas.Contest;
    expect(contest?.properties.currentPhase?.anyOf).toContainEqual({ type: "null" });
  });

  it("accepts what the routes accept: a volunteer's ref and name, a reason, the links search", () => {
    const schemas = (
      doc as unknown as {
        components: { schemas: Record<string, { properties: Record<string, { pattern: string }> }> };
      }
    ).components.schemas;
    const matches = (pattern: string | undefined, value: string) =>
      new RegExp(pattern ?? "(?!)", "u").test(value);
    expect(matches(schemas.Volunteer?.properties.ref?.pattern, "ada@example.org")).toBe(true);
    expect(matches(schemas.Volunteer?.properties.ref?.pattern, "Zoë.O'Brien")).toBe(true);
    expect(matches(schemas.Volunteer?.properties.name?.pattern, "Ada Lovelace")).toBe(true);
    expect(matches(schemas.KeyRevoke?.properties.reason?.pattern, "private key leaked")).toBe(true);
    const q = doc.paths["/v1/links"]?.get?.parameters?.find((p) => p.name === "q") as
      | { schema?: { pattern?: string } }
      | undefined;
    expect(matches(q?.schema?.pattern, "ada")).toBe(true);
  });
});

describe("OpenAPI examples", () => {
  it("every operation has an example for each request and response body and path parameter", () => {
    const missing: string[] = [];
    for (const { method, path, op } of operations()) {
      for (const [type, media] of Object.entries(op.requestBody?.content ?? {})) {
        if (media.example === undefined) missing.push(`${method} ${path} request ${type}`);
      }
      for (const [status, r] of Object.entries(op.responses ?? {})) {
        for (const [type, media] of Object.entries(r.content ?? {})) {
          if (media.example === undefined) missing.push(`${method} ${path} ${status} ${type}`);
        }
      }
      for (const p of op.parameters ?? []) {
        if (p.in === "path" && (p.example === undefined || p.example === null))
          missing.push(`${method} ${path} path ${p.name}`);
      }
    }
    expect(missing).toEqual([]);
  });

  it("examples follow the demo data, and a problem example carries its status's code", () => {
    const link = doc.paths["/v1/links"]!.post!;
    expect(link.requestBody?.content?.["application/json"]?.example).toMatchObject({
      campaignId: "starmer-2020",
      phase: "ballot",
      volunteer: { ref: "ada@example.org" },
    });
    const notFound =
      doc.paths["/v1/links/{id}"]!.get!.responses?.["404"]?.content?.["application/problem+json"];
    expect(notFound?.example).toMatchObject({ code: "not_found", status: 404 });
  });

  it("never holds a credential: no admin token, no key-shaped or token-shaped value", () => {
    const text = JSON.stringify(doc);
    expect(text).not.toContain(ADMIN);
    expect(text).not.toMatch(/plk_[A-Za-z0-9_-]{20,}/);
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}/);
  });
});

describe("/docs", () => {
  it("allows its one stylesheet by hash: no 'unsafe-inline' in its CSP", async () => {
    const res = await call(h, "GET", "/docs", { token: null });
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).not.toContain("unsafe-inline");
    const style = /<style>([\s\S]*?)<\/style>/.exec(await res.text())?.[1] ?? "";
    const hash = createHash("sha256").update(style, "utf8").digest("base64");
    expect(csp).toContain(`style-src 'sha256-${hash}'`);
    expect(csp).toContain("frame-ancestors 'none'");
  });

  it("shows a curl example in every operation's section, with placeholders only", () => {
    const sections = html.split('<section class="op">').slice(1);
    expect(sections).toHaveLength(operations().length);
    for (const section of sections) {
      const id = /<h3 id="([^"]+)"/.exec(section)?.[1];
      expect({ id, curl: section.includes('<pre class="curl"><code>curl') }).toEqual({ id, curl: true });
    }
    expect(html).toContain("Bearer $ADMIN_TOKEN");
    expect(html).not.toContain(ADMIN);
  });

  it("builds curl lines from the document: path examples, body examples, CSV uploads with a file", () => {
    const [one] = curlExamples("get", "/v1/links/{id}", doc.paths["/v1/links/{id}"]!.get! as never);
    expect(one).toBe(
      'curl "$TOKEN_SERVICE_URL/v1/links/lnk_3fj0d9Qk1lJ2m3n4o5p6qA" \\\n  -H "Authorization: Bearer $ADMIN_TOKEN"',
    );
    const batch = curlExamples("post", "/v1/links/batch", doc.paths["/v1/links/batch"]!.post! as never);
    expect(batch).toHaveLength(2);
    expect(batch[0]).toContain('-H "Content-Type: application/json"');
    expect(batch[0]).not.toContain("?campaignId");
    expect(batch[1]).toContain("/v1/links/batch?campaignId=starmer-2020&phase=ballot");
    expect(batch[1]).toContain("--data-binary @volunteers.csv");
    const [health] = curlExamples("get", "/healthz", doc.paths["/healthz"]!.get! as never);
    expect(health).toBe('curl "$TOKEN_SERVICE_URL/healthz"');
  });

  it("renders descriptions as Markdown", () => {
    expect(html).toContain("<strong>Re-uploads never double links:</strong>");
    expect(html).toContain("<li><code>Content-Type: text/csv</code>");
  });
});

describe("renderMarkdown", () => {
  it("renders paragraphs, lists, code, bold and safe links", () => {
    expect(renderMarkdown("One **two** `x<y`\n\n- a\n- [b](https://example.org/?q=1&r=2)")).toBe(
      '<p>One <strong>two</strong> <code>x&lt;y</code></p>\n<ul><li>a</li><li><a href="https://example.org/?q=1&amp;r=2">b</a></li></ul>',
    );
    expect(renderMarkdown("Lead-in:\n- a\n- b")).toBe("<p>Lead-in:</p><ul><li>a</li><li>b</li></ul>");
  });

  it("escapes HTML and never links a script URL", () => {
    const out = renderMarkdown('<script>alert(1)</script> [x](javascript:alert(1)) <img src=x onerror="y">');
    expect(out).not.toMatch(/<script|<img|<a /);
    expect(out).toContain("&lt;script&gt;");
    expect(renderMarkdown("`**not bold**`")).toBe("<p><code>**not bold**</code></p>");
  });
});
