/**
 * The path a request line may show, worked out from the routes a service serves rather than from
 * a list of paths known to hold a secret (such a list misses the next route, and every way of
 * mistyping a link).
 *
 * - A path a route matches is written as that route: its literal segments, and for each parameter
 *   its value only when the parameter's name says it is an identifier (`:id`, `:campaignId`,
 *   `:phase`, `:kid`); any other parameter (`/l/:token`) is written as its name.
 * - A path no route matches is input, not a route: only its leading segments that are literal
 *   segments of some route are written, then `…` (`/x/<code>` → `/…`, `/pb/<token>` → `/pb/…`).
 * - Never the query, never more than 256 characters.
 *
 * Matching ignores the method (a parameter is masked whatever was asked of it), decodes escapes
 * (`/%6C/<code>` is `/l/<code>`), resolves `.` and `..` segments, reads `\` as `/` and an
 * absolute-form target (`http://host/l/…`) by its path: every spelling a router or URL parser
 * might take to a route is masked as that route.
 */

/** Anything with Hono's `routes`: the patterns it was given (`/l/:token`, `/v1/*`). */
export interface RouteList {
  readonly routes: readonly { readonly path: string }[];
}

/** A request target (path and query, or an absolute URL) to the path its request line shows. */
export type LogPath = (target: string) => string;

/**
 * Parameters whose values a request line may show: identifiers of contests, campaigns, phases,
 * links, keys and records. Any other name (`:token`, or one a new route brings) is written as its
 * name, so a route that carries a secret is masked by being defined, not by being listed.
 */
const PLAIN_PARAM = /^(?:id|kid|phase|[a-z][A-Za-z0-9]*Id)$/;

/**
 * The values an identifier's place may show, by the grammar of Phaselock's identifiers: a generated
 * id (`lnk_…`, `m_000001`; never a credential's `pl?_` prefix), a signing key's thumbprint (43
 * base64url characters), a slug of short lowercase words (`leadership-2020`, `ballot`). Anything
 * else — a short link code (22 base64url characters, whatever it starts with), a session, an API
 * key, a signed link, a key in hex, a pasted URL, a code with something around it — is written as
 * the parameter's name: someone who pasted one into a link's id (`GET /v1/links/<code>`) leaves no
 * secret in the log.
 */
const SHOWN_VALUE =
  /^(?:(?!pl[a-z]_)[a-z]{1,4}_[A-Za-z0-9_-]{1,40}|[A-Za-z0-9_-]{43}|[a-z0-9]{1,19}(?:[._-][a-z0-9]{1,19}){0,7})$/;
const CODE_SHAPE = /^[A-Za-z0-9_-]{22}$/;
const shownValue = (value: string): boolean =>
  value.length <= 64 && SHOWN_VALUE.test(value) && !CODE_SHAPE.test(value);

/** Written in place of the segments of a path no route matches. */
export const UNMATCHED = "…";
const MAX_PATH = 256;

type Segment =
  | { kind: "literal"; text: string }
  | { kind: "param"; name: string; plain: boolean }
  | { kind: "wildcard" };

interface Pattern {
  segments: Segment[];
  /** `/pb/*`, `*`: says which prefix is a route's, never what follows it. */
  wildcard: boolean;
}

/** Builds the path mask of a fixed set of route patterns (`/l/:token`, `/members/:id`). */
export function createLogPath(patterns: Iterable<string>): LogPath {
  const compiled = [...new Set(patterns)].map(compilePattern);
  const exact = compiled.filter((p) => !p.wildcard);
  return (target) => bound(maskSegments(exact, compiled, segmentsOf(target)));
}

/**
 * The path mask of an app's own routes (Hono's `app.routes`), built on first use and again when
 * routes were added since, so it may be made before the routes are registered.
 */
export function routeLogPath(app: RouteList): LogPath {
  let built: LogPath | undefined;
  let count = -1;
  return (target) => {
    if (!built || app.routes.length !== count) {
      count = app.routes.length;
      built = createLogPath(app.routes.map((r) => r.path));
    }
    return built(target);
  };
}

function compilePattern(pattern: string): Pattern {
  const path = pattern.startsWith("/") ? pattern.slice(1) : pattern;
  const segments: Segment[] = [];
  if (pattern !== "/") {
    for (const s of path.split("/")) {
      if (s.includes("*")) {
        segments.push({ kind: "wildcard" });
        break;
      }
      if (s.startsWith(":")) {
        // Hono's `:name{regex}` and optional `:name?`: the name is what decides.
        const name = /^:([A-Za-z_$][\w$]*)/.exec(s)?.[1] ?? "";
        segments.push({ kind: "param", name: name || "param", plain: PLAIN_PARAM.test(name) });
      } else {
        segments.push({ kind: "literal", text: s });
      }
    }
  }
  return { segments, wildcard: segments.some((s) => s.kind === "wildcard") };
}

/**
 * The decoded segments of a target's path as a router reads them, or null when it has none (a
 * target that is neither a path nor a URL).
 */
function segmentsOf(target: string): string[] | null {
  let path = target;
  const cut = path.search(/[?#]/);
  if (cut !== -1) path = path.slice(0, cut);
  if (!path.startsWith("/") && !path.startsWith("\\")) {
    try {
      path = new URL(target).pathname;
    } catch {
      return null;
    }
  }
  const out: string[] = [];
  const raw = path.slice(1).split(/[/\\]/);
  for (const segment of raw) {
    if (/^(?:\.|%2e)$/i.test(segment)) continue;
    if (/^(?:\.|%2e){2}$/i.test(segment)) {
      out.pop();
      continue;
    }
    out.push(segment.includes("%") ? segment.replace(/(?:%[0-9A-Fa-f]{2})+/g, decodeOrKeep) : segment);
  }
  // `/a/.` and `/a/..` end on a directory, as a URL parser reads them: `/a/`.
  const last = raw.at(-1) ?? "";
  if (raw.length > 1 && /^(?:\.|%2e){1,2}$/i.test(last)) out.push("");
  return out.length === 1 && out[0] === "" ? [] : out;
}

/** A run of escapes decoded, or kept as sent when it is malformed (a link cut mid-escape). */
const decodeOrKeep = (escapes: string): string => {
  try {
    return decodeURIComponent(escapes);
  } catch {
    return escapes;
  }
};

function maskSegments(exact: readonly Pattern[], all: readonly Pattern[], path: string[] | null): string {
  if (path === null) return `/${UNMATCHED}`;
  const candidates = exact.filter((p) => matches(p.segments, path));
  if (candidates.length > 0) {
    // Several routes may match one path (`/members/export`, `/members/:id`): a segment is shown
    // only when every one of them would show it.
    return `/${path
      .map((value, i) => {
        let shown: string | undefined;
        for (const p of candidates) {
          const s = p.segments[i]!;
          if (s.kind !== "param") continue;
          shown = s.plain && shownValue(value) ? encoded(value) : undefined;
          if (shown === undefined) return `:${s.name}`;
        }
        return shown ?? value;
      })
      .join("/")}`;
  }
  // No route: keep the leading segments that are literal segments of some route, in order.
  let alive = all;
  const kept: string[] = [];
  for (const [i, value] of path.entries()) {
    const next = alive.filter((p) => {
      const s = p.segments[i];
      return s?.kind === "literal" && s.text === value;
    });
    if (next.length === 0) break;
    kept.push(value);
    alive = next;
  }
  return kept.length === path.length ? `/${kept.join("/")}` : `/${[...kept, UNMATCHED].join("/")}`;
}

const encoded = (value: string): string | undefined => {
  try {
    return encodeURIComponent(value);
  } catch {
    return undefined; // a lone surrogate: nothing to show
  }
};

function matches(pattern: readonly Segment[], path: readonly string[]): boolean {
  if (pattern.length !== path.length) return false;
  return pattern.every((s, i) => {
    const value = path[i]!;
    return s.kind === "literal" ? s.text === value : s.kind === "param" && value !== "";
  });
}

const bound = (path: string): string => (path.length > MAX_PATH ? `${path.slice(0, MAX_PATH)}…` : path);
