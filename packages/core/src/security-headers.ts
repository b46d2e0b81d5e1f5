/** HSTS for a service answered over HTTPS: a year, subdomains too. Browsers ignore it over http. */
export const HSTS = "max-age=31536000; includeSubDomains";

/**
 * The CSP of an HTML page that sets none of its own: same-origin assets only, nothing inline but
 * styles, never framed. Pages that need less say so themselves (the gateway's allow no script).
 */
export const DEFAULT_PAGE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join("; ");

/**
 * The security headers an answer still lacks, given its headers (`get`) and whether it goes out
 * over HTTPS: `X-Content-Type-Options: nosniff` on every answer (JSON too), HSTS behind HTTPS, and
 * on an HTML page a CSP with `frame-ancestors 'none'` (the page's own, completed if it forgot)
 * and a `Referrer-Policy`. Every service's middleware applies this one list.
 */
export function missingSecurityHeaders(
  get: (name: string) => string | null | undefined,
  https: boolean,
): [name: string, value: string][] {
  const out: [string, string][] = [];
  if (get("x-content-type-options") !== "nosniff") out.push(["X-Content-Type-Options", "nosniff"]);
  if (https && !get("strict-transport-security")) out.push(["Strict-Transport-Security", HSTS]);
  if (!(get("content-type") ?? "").toLowerCase().startsWith("text/html")) return out;
  const csp = get("content-security-policy");
  if (!csp) out.push(["Content-Security-Policy", DEFAULT_PAGE_CSP]);
  else if (!/(^|;)\s*frame-ancestors\s+'none'\s*(;|$)/.test(csp))
    out.push([
      "Content-Security-Policy",
      `${csp.replace(/;?\s*frame-ancestors[^;]*/g, "")}; frame-ancestors 'none'`,
    ]);
  if (!get("referrer-policy")) out.push(["Referrer-Policy", "no-referrer"]);
  return out;
}

/** Whether a request arrived over HTTPS, as its URL or a proxy's `X-Forwarded-Proto` says. */
export function viaHttps(url: string, forwardedProto: string | null | undefined): boolean {
  return url.startsWith("https:") || forwardedProto?.split(",")[0]?.trim().toLowerCase() === "https";
}

/**
 * Whether a request is another origin's subresource or frame rather than a person's own tab or a
 * link they followed, by its Fetch Metadata: `Sec-Fetch-Site` same-site or cross-site, and not a
 * top-level navigation (`Sec-Fetch-Mode: navigate` with `Sec-Fetch-Dest: document`, or no dest from
 * a browser older than it). Another port or subdomain of the site is same-site, so a
 * `SameSite=Strict` cookie goes with its `<img>` or hidden `<iframe>`: an `<iframe>`, `<embed>` or
 * `<object>` is a "navigate" request too, which `frame-ancestors 'none'` stops rendering only once
 * it has been answered. A request with no Fetch Metadata (a script, a browser without it) is not.
 */
export function embeddedElsewhere(fetch: {
  site: string | null | undefined;
  mode: string | null | undefined;
  dest: string | null | undefined;
}): boolean {
  const site = fetch.site?.trim().toLowerCase();
  if (site !== "same-site" && site !== "cross-site") return false;
  const dest = fetch.dest?.trim().toLowerCase();
  const topLevel =
    fetch.mode?.trim().toLowerCase() === "navigate" && (dest === undefined || dest === "document");
  return !topLevel;
}
