/**
 * Request-target normalisation for the checked proxy (`/pb/*`).
 *
 * The gateway decides the scope from the path it sees, and the upstream routes on the path it
 * receives; if the two can disagree (`/pb/members/%65xport`, `/pb/x/..%2fexport`, `\`), the check
 * is bypassable. So anything that a server, a router or a URL parser might read two ways is refused
 * outright rather than "cleaned up", the path is decoded exactly once, and what is forwarded is a
 * canonical re-encoding of that decoded path: the gateway's view and the upstream's view are the
 * same string.
 */

/** The proxied prefix; it is stripped before matching and forwarding. */
export const PROXY_PREFIX = "/pb";
/** The gateway's own routes under the prefix (session end): never proxied. */
const OWN_PREFIX = `${PROXY_PREFIX}/_phaselock/`;

/**
 * Whether a raw request target goes to the proxy (`/pb/…`, not `/pb/_phaselock/…`); everything
 * else, `/pb` itself included, is the app's.
 */
export const isProxied = (rawTarget: string): boolean =>
  rawTarget.startsWith(`${PROXY_PREFIX}/`) && !rawTarget.startsWith(OWN_PREFIX);

export type NormalizedPath =
  | {
      ok: true;
      /** Canonical path without the `/pb` prefix, always starting with `/`, e.g. `/members/m_000001`. */
      path: string;
      /** Raw query string with its `?` (as `URL.search`), `""` when there is none or it is empty. */
      query: string;
      /** `path + query`: what to send upstream. */
      target: string;
    }
  | { ok: false };

const REFUSED: NormalizedPath = { ok: false };

// Encoded `/`, `\`, `.` and `%` (double encoding) in the path: each is read differently by
// different decoders, so none is ever legitimate here.
const ENCODED_SEPARATOR_OR_DOT = /%(?:2f|5c|2e|25)/i;
// A request-target is visible ASCII only (RFC 9112). Space, controls, DEL and non-ASCII are refused.
const NOT_VISIBLE_ASCII = /[^\x21-\x7e]/;
// After decoding: controls, DEL and the separators that must never appear inside a segment.
// biome-ignore lint/suspicious/noControlCharactersInRegex: finding control characters is the point
const BAD_DECODED = /[\x00-\x1f\x7f/\\]/;

/**
 * Checks and normalises a raw request target (path and query exactly as received, e.g.
 * `incoming.url`, not a URL that a parser has already "resolved").
 *
 * Refuses (`{ ok: false }`): anything outside `/pb` or `/pb/…` (`/pbx` is not a match); encoded
 * `/`, `\`, `.` or `%` (`%2f`, `%5c`, `%2e`, `%25`, any case); `.` and `..` segments; empty
 * segments (`//`); backslashes; control characters, raw or encoded; malformed percent-encoding;
 * a fragment. A single trailing `/` is kept (`/pb/` → `/`).
 */
export function normalizePath(rawPathWithQuery: string): NormalizedPath {
  if (NOT_VISIBLE_ASCII.test(rawPathWithQuery) || rawPathWithQuery.includes("#")) return REFUSED;

  const q = rawPathWithQuery.indexOf("?");
  const rawPath = q === -1 ? rawPathWithQuery : rawPathWithQuery.slice(0, q);
  const query = q === -1 || q === rawPathWithQuery.length - 1 ? "" : rawPathWithQuery.slice(q);

  if (rawPath.includes("\\") || ENCODED_SEPARATOR_OR_DOT.test(rawPath)) return REFUSED;

  let rest: string;
  if (rawPath === PROXY_PREFIX) rest = "/";
  else if (rawPath.startsWith(`${PROXY_PREFIX}/`)) rest = rawPath.slice(PROXY_PREFIX.length);
  else return REFUSED;

  // rest starts with "/": the first element of the split is always "".
  const rawSegments = rest.split("/").slice(1);
  const canonical: string[] = [];
  for (let i = 0; i < rawSegments.length; i++) {
    const raw = rawSegments[i]!;
    if (raw === "") {
      // Only the very last segment may be empty: a trailing slash, or the root "/".
      if (i === rawSegments.length - 1) {
        canonical.push("");
        continue;
      }
      return REFUSED;
    }
    let decoded: string;
    try {
      decoded = decodeURIComponent(raw);
    } catch {
      return REFUSED;
    }
    if (decoded === "." || decoded === ".." || BAD_DECODED.test(decoded)) return REFUSED;
    canonical.push(encodeSegment(decoded));
  }

  const path = `/${canonical.join("/")}`;
  return { ok: true, path, query, target: path + query };
}

/**
 * Percent-encodes one decoded segment. Unreserved characters and the sub-delimiters `:@` stay as
 * they are, so plain route literals (`members`, `export`, `calls`) are unchanged and any encoded
 * spelling of them (`%65xport`) becomes the plain one.
 */
function encodeSegment(decoded: string): string {
  return encodeURIComponent(decoded).replace(/%3A/g, ":").replace(/%40/g, "@");
}
