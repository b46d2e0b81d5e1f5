/** A rule of a generic route table: what `createRouteMatcher` returns for a matching request. */
export interface RouteEntry<T> {
  method: string;
  pattern: string;
  value: T;
}

/** Finds the value of the most specific matching entry, or `null`. */
export type RouteMatcher<T> = (method: string, path: string) => T | null;

interface CompiledEntry<T> {
  method: string;
  /** Literal segment, or `null` for a parameter. */
  segments: (string | null)[];
  /** The same, literals lower-cased: how a router that folds case reads the entry. */
  folded: (string | null)[];
  value: T;
}

const METHOD = /^[A-Z]+$/;
const PARAM = /^:[A-Za-z_][A-Za-z0-9_]*$/;
// Literal segments are compared with canonical paths (see paths.ts), so they must be plain.
const LITERAL = /^[A-Za-z0-9._~!$&'()*+,;=:@-]+$/;

/**
 * A route table over normalised paths (`normalizePath(...).path`). `HEAD` is matched as `GET`.
 * A `:param` matches exactly one non-empty segment. When several entries match, the more specific
 * wins: comparing segment by segment, a literal beats a parameter (`/members/export` beats
 * `/members/:id`). Matching is exact and case-sensitive; an empty segment or a trailing slash
 * never matches an entry other than `/`. A query string, if passed, is ignored. A path that a
 * router folding case (ASP.NET, IIS) would give to a more specific entry matches nothing
 * (`/members/EXPORT` is neither `/members/:id` nor the export): the upstream would serve that
 * entry, under a scope other than the one checked.
 *
 * Throws when an entry is malformed or two entries have the same method and shape.
 */
export function createRouteMatcher<T>(entries: readonly RouteEntry<T>[]): RouteMatcher<T> {
  const compiled = entries.map(compileEntry);

  const seen = new Set<string>();
  for (const r of compiled) {
    const key = `${r.method} /${r.segments.map((s) => s ?? ":").join("/")}`;
    if (seen.has(key)) throw new Error(`Duplicate route rule: ${key}`);
    seen.add(key);
  }

  // Most specific first, so the first match is the answer.
  compiled.sort((a, b) => compareSpecificity(b, a));

  const byMethod = new Map<string, CompiledEntry<T>[]>();
  for (const r of compiled) {
    const list = byMethod.get(r.method) ?? [];
    list.push(r);
    byMethod.set(r.method, list);
  }

  return (method, path) => {
    const m = method.toUpperCase();
    const candidates = byMethod.get(m === "HEAD" ? "GET" : m);
    if (!candidates) return null;

    const q = path.indexOf("?");
    const p = q === -1 ? path : path.slice(0, q);
    if (!p.startsWith("/")) return null;
    const segments = p === "/" ? [] : p.slice(1).split("/");

    // The first entry a case-folding router would pick: the answer when it is also an exact match.
    const folded = segments.map((s) => s.toLowerCase());
    for (const entry of candidates) {
      if (matches(entry.folded, folded)) return matches(entry.segments, segments) ? entry.value : null;
    }
    return null;
  };
}

function compileEntry<T>(entry: RouteEntry<T>): CompiledEntry<T> {
  const where = `${entry.method} ${entry.pattern}`;
  if (!METHOD.test(entry.method)) throw new Error(`Route rule method must be upper-case: ${where}`);
  if (entry.method === "HEAD") throw new Error(`Route rule for HEAD is implied by GET: ${where}`);
  if (!entry.pattern.startsWith("/")) throw new Error(`Route pattern must start with "/": ${where}`);

  const raw = entry.pattern === "/" ? [] : entry.pattern.slice(1).split("/");
  const segments = raw.map((s) => {
    if (s.startsWith(":")) {
      if (!PARAM.test(s)) throw new Error(`Bad route parameter "${s}": ${where}`);
      return null;
    }
    if (!LITERAL.test(s) || s === "." || s === "..") throw new Error(`Bad route segment "${s}": ${where}`);
    return s;
  });
  const folded = segments.map((s) => s?.toLowerCase() ?? null);
  return { method: entry.method, segments, folded, value: entry.value };
}

/** Positive when `a` is more specific than `b`. Only rules of the same length can both match. */
function compareSpecificity<T>(a: CompiledEntry<T>, b: CompiledEntry<T>): number {
  const n = Math.min(a.segments.length, b.segments.length);
  for (let i = 0; i < n; i++) {
    const la = a.segments[i] !== null;
    const lb = b.segments[i] !== null;
    if (la !== lb) return la ? 1 : -1;
  }
  return a.segments.length - b.segments.length;
}

function matches(pattern: readonly (string | null)[], segments: readonly string[]): boolean {
  if (pattern.length !== segments.length) return false;
  for (let i = 0; i < pattern.length; i++) {
    const want = pattern[i];
    const got = segments[i]!;
    if (want === null) {
      if (got === "" || got === "." || got === "..") return false;
    } else if (want !== got) {
      return false;
    }
  }
  return true;
}
