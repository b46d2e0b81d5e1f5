/** HSTS for a service answered over HTTPS: a year, subdomains too. Browsers ignore it over http. */
export const HSTS = "max-age=31536000; includeSubDomains";

/**
 * The headers every HTML page of every service carries: its CSP (each page says what it needs;
 * all of them `frame-ancestors 'none'`), no sniffing, no referrer, and HSTS behind HTTPS.
 */
export function htmlSecurityHeaders(csp: string, https: boolean): Record<string, string> {
  if (!csp.includes("frame-ancestors 'none'")) throw new Error("a page CSP must forbid framing");
  const headers: Record<string, string> = {
    "Content-Security-Policy": csp,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
  };
  if (https) headers["Strict-Transport-Security"] = HSTS;
  return headers;
}
