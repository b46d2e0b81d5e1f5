import { LOCAL_TIME_SCRIPT, renderPage, volunteerCsp } from "@phaselock/ui";

export { escapeHtml } from "@phaselock/ui";

/** The gateway's pages run one script, the shared local-time one; the CSP allows it by hash. */
export const VOLUNTEER_CSP = volunteerCsp([LOCAL_TIME_SCRIPT]);

/** A small, self-contained, phone-readable page in the volunteer pages' shared look (@phaselock/ui). */
export function page(title: string, body: string): string {
  return renderPage({ title, body, scripts: [LOCAL_TIME_SCRIPT] });
}

/** Whether the client asked for a page rather than JSON. */
export function wantsHtml(accept: string | undefined): boolean {
  if (!accept) return false;
  const html = accept.indexOf("text/html");
  if (html === -1) return false;
  const json = accept.indexOf("application/json");
  return json === -1 || html < json;
}
