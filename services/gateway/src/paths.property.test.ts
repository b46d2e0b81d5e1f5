import type { Scope } from "@phaselock/core";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { normalizePath, PROXY_PREFIX } from "./paths.ts";
import { createUpstreamRoutes } from "./upstream-routes.ts";

const routes = createUpstreamRoutes();
const scopes = (method: string, path: string): Scope | null => routes(method, path)?.scope ?? null;
const METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get"] as const;
const method = fc.constantFrom(...METHODS);

/** The contract's route table, written out independently of the matcher, over decoded segments. */
function contractScope(m: string, segments: readonly string[]): Scope | null {
  const verb = m.toUpperCase() === "HEAD" ? "GET" : m.toUpperCase();
  const [a, b, c] = segments;
  const n = segments.length;
  if (verb === "GET") {
    if (n === 0) return "calls:read";
    if (n === 2 && a === "calls" && b === "next") return "calls:read";
    if (n === 2 && a === "members" && b === "export") return "members:export";
    if (n === 2 && a === "members" && b !== "") return "members:read";
  }
  if (verb === "POST" && n === 3 && a === "calls" && b !== "" && c === "outcome") return "calls:write";
  return null;
}

const decodedSegments = (path: string): string[] =>
  path === "/" ? [] : path.slice(1).split("/").map(decodeURIComponent);

/**
 * How another parser reads the same request target: WHATWG URL resolution (dot segments, `\` as
 * `/`, as browsers and many servers do), then percent-decoding of each segment. `null` when it
 * is not under the prefix.
 */
function otherReading(raw: string): string[] | null {
  let pathname: string;
  try {
    pathname = new URL(raw, "http://upstream.test").pathname;
  } catch {
    return null;
  }
  const parts = pathname.split("/").map((s) => {
    try {
      return decodeURIComponent(s);
    } catch {
      return s;
    }
  });
  // parts[0] is "" (the leading slash)
  if (parts[1] !== PROXY_PREFIX.slice(1)) return null;
  const rest = parts.slice(2);
  return rest.length === 1 && rest[0] === "" ? [] : rest;
}

// Percent-encodes one character in a random hex case.
const encodeChar = (ch: string, upper: boolean) =>
  Array.from(new TextEncoder().encode(ch), (b) => {
    const hex = b.toString(16).padStart(2, "0");
    return `%${upper ? hex.toUpperCase() : hex}`;
  }).join("");

/** A spelling of `segment` with each character kept or percent-encoded (any hex case). */
const spelled = (segment: string) =>
  fc
    .array(fc.tuple(fc.boolean(), fc.boolean()), { minLength: segment.length, maxLength: segment.length })
    .map((choices) =>
      Array.from(segment, (ch, i) => (choices[i]![0] ? encodeChar(ch, choices[i]![1]) : ch)).join(""),
    );

// The pieces path tricks are made of.
const trick = fc.constantFrom(
  ".",
  "..",
  "%2e",
  "%2E",
  "%2e%2e",
  ".%2e",
  "",
  "\\",
  "%5c",
  "%5C",
  "%2f",
  "%2F",
  "%252f",
  "%25",
  "%",
  "%e",
  ";",
  ";x=1",
  "%3b",
  "%00",
  "%0a",
  "%c0%ae",
  "%ef%bd%85",
  "\u00e9",
  "\uff45",
  " ",
  "?",
  "#",
  "x",
  "members",
  "export",
  "EXPORT",
  "Export",
  "calls",
  "next",
  "outcome",
);

/** `/members/export` with tricks spliced in: before, inside and after its segments. */
const exportTrick = fc
  .tuple(
    fc.constantFrom("/pb", "/pb", "/pb", "/PB", "/pb/", "/pb//", "/pb\\", "/pb;x", "/%70b", "/pb/x/.."),
    spelled("members"),
    spelled("export"),
    fc.array(trick, { maxLength: 3 }),
    fc.array(trick, { maxLength: 3 }),
    fc.array(trick, { maxLength: 3 }),
    fc.constantFrom("/", "\\", "//", "/./", "/x/../", "%2f", "/%2e/"),
    fc.constantFrom("", "", "/", "?", "?a=%2f..", ";", ";jsessionid=1", "#", "%00", "/."),
  )
  .map(
    ([prefix, members, exp, t1, t2, t3, sep, tail]) =>
      `${prefix}/${t1.join("/")}${t1.length ? "/" : ""}${members}${t2.join("")}${sep}${exp}${t3.join("")}${tail}`,
  );

/** Arbitrary request targets: random text, random segment lists, and the trick alphabet. */
const anyTarget = fc.oneof(
  fc.string(),
  fc.string({ unit: "binary" }).map((s) => `/pb/${s}`),
  fc
    .array(fc.oneof(trick, fc.stringMatching(/^[A-Za-z0-9_.~%:@!$&'()*+,;=-]{0,8}$/)), { maxLength: 6 })
    .map((segs) => `/pb/${segs.join("/")}`),
  fc.array(trick, { maxLength: 8 }).map((t) => `/pb/${t.join("")}`),
  exportTrick,
);

describe("normalizePath (property)", () => {
  it("never throws", () => {
    fc.assert(
      fc.property(fc.oneof(anyTarget, fc.string({ unit: "binary" })), (raw) => {
        normalizePath(raw);
      }),
      { numRuns: 1000 },
    );
  });

  it("is idempotent: its output, put back under the prefix, normalises to itself", () => {
    fc.assert(
      fc.property(anyTarget, (raw) => {
        const once = normalizePath(raw);
        if (!once.ok) return;
        expect(normalizePath(PROXY_PREFIX + once.target)).toEqual(once);
      }),
      { numRuns: 1000 },
    );
  });

  it("an accepted target reads the same to a URL parser as to the gateway", () => {
    fc.assert(
      fc.property(anyTarget, (raw) => {
        const n = normalizePath(raw);
        if (!n.ok) return;
        expect(otherReading(raw)).toEqual(decodedSegments(n.path));
        expect(otherReading(PROXY_PREFIX + n.target)).toEqual(decodedSegments(n.path));
      }),
      { numRuns: 1000 },
    );
  });
});

describe("route → scope over normalised paths (property)", () => {
  it("gives exactly the contract's scope, and none for an unmapped path", () => {
    fc.assert(
      fc.property(method, anyTarget, (m, raw) => {
        const n = normalizePath(raw);
        if (!n.ok) return;
        expect(scopes(m, n.path)).toBe(contractScope(m, decodedSegments(n.path)));
      }),
      { numRuns: 1000 },
    );
  });

  it("an unmapped path, however spelled, maps to no scope", () => {
    const segment = fc.oneof(
      fc.constantFrom("members", "export", "calls", "next", "outcome", "x", "EXPORT", "é", ";", "a b"),
      fc.string({ minLength: 1, maxLength: 6 }),
    );
    fc.assert(
      fc.property(
        method,
        fc.array(segment, { maxLength: 5 }),
        fc.boolean(),
        fc.infiniteStream(fc.tuple(fc.boolean(), fc.boolean())),
        (m, segs, trailingSlash, choices) => {
          fc.pre(!segs.some((s) => s === "." || s === ".." || /[/\\]/.test(s)));
          const decoded = trailingSlash && segs.length > 0 ? [...segs, ""] : segs;
          fc.pre(contractScope(m, decoded) === null);
          const it = choices[Symbol.iterator]();
          const raw = `/pb/${decoded
            .map((s) =>
              Array.from(s, (ch) => {
                const [enc, upper] = it.next().value!;
                return enc || !/^[A-Za-z0-9_.~-]$/.test(ch) ? encodeChar(ch, upper) : ch;
              }).join(""),
            )
            .join("/")}`;
          const n = normalizePath(raw);
          if (n.ok) expect(scopes(m, n.path)).toBeNull();
        },
      ),
      { numRuns: 1000 },
    );
  });

  it("no spelling of /members/export maps to a scope other than members:export", () => {
    fc.assert(
      fc.property(method, exportTrick, (m, raw) => {
        const n = normalizePath(raw);
        const other = otherReading(raw);
        const readAsExport =
          other !== null && other.length === 2 && other[0] === "members" && other[1] === "export";
        if (!n.ok) return;
        const scope = scopes(m, n.path);
        // Whatever another parser would take for the export is the export here too, or nothing.
        if (readAsExport) expect([null, "members:export"]).toContain(scope);
        // And the export scope goes with exactly one forwarded path.
        if (scope === "members:export") expect(n.path).toBe("/members/export");
        if (n.path !== "/members/export") expect(scope).not.toBe("members:export");
      }),
      { numRuns: 1000 },
    );
  });

  it("every percent-encoding of /members/export is the export route, forwarded plain", () => {
    fc.assert(
      fc.property(spelled("members"), spelled("export"), fc.constantFrom("GET", "HEAD"), (a, b, m) => {
        const n = normalizePath(`/pb/${a}/${b}`);
        expect(n).toEqual({ ok: true, path: "/members/export", query: "", target: "/members/export" });
        expect(scopes(m, "/members/export")).toBe("members:export");
      }),
      { numRuns: 300 },
    );
  });
});
