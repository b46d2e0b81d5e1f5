/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import { raw } from "hono/html";
import type { Child } from "hono/jsx";
import type { Role } from "../context.ts";
import { describeIssue, type Problem, plainDetail, plainWords } from "./api.ts";

/** The signed-in person as a page sees them: never their credential. */
export interface Viewer {
  role: Role;
  campaignId: string | null;
  /** The API key id, or `admin` for the admin token. */
  actor: string;
  csrf: string;
}

export interface NavEntry {
  href: string;
  label: string;
  roles: readonly Role[];
}

/** The navigation, by role: each entry shows only for the roles whose API routes it uses. */
export const NAV: readonly NavEntry[] = [
  { href: "/console/links", label: "Links", roles: ["admin", "coordinator"] },
  { href: "/console/links/new", label: "Upload volunteers", roles: ["admin", "coordinator"] },
  { href: "/console/progress", label: "Progress", roles: ["admin", "coordinator"] },
  { href: "/console/contests", label: "Contests", roles: ["admin"] },
  { href: "/console/campaigns", label: "Campaigns", roles: ["admin"] },
  { href: "/console/api-keys", label: "API keys", roles: ["admin"] },
  { href: "/console/revocations", label: "Revocations", roles: ["admin", "auditor"] },
  { href: "/console/signing-keys", label: "Signing keys", roles: ["admin"] },
  { href: "/console/audit", label: "Audit log", roles: ["admin", "auditor"] },
  { href: "/console/reports/dead-links", label: "Dead links", roles: ["admin"] },
];

export const navFor = (role: Role): NavEntry[] => NAV.filter((n) => n.roles.includes(role));

export type Flash = { kind: "ok" | "error" | "warn" | "info"; text: string };

export function Layout(props: {
  title: string;
  viewer?: Viewer | undefined;
  path?: string;
  flash?: Flash | undefined;
  children?: Child;
}) {
  const { viewer } = props;
  // The doctype keeps browsers in standards mode (JSX cannot write one itself).
  return (
    <>
      {raw("<!DOCTYPE html>")}
      <html lang="en-GB">
        <head>
          <meta charset="utf-8" />
          <meta name="viewport" content="width=device-width, initial-scale=1" />
          <meta name="referrer" content="no-referrer" />
          <title>{`${props.title} · Phaselock console`}</title>
          {/* No icon file: without this the browser asks for /favicon.ico, a 404 on every first page. */}
          <link rel="icon" href="data:," />
          <link rel="stylesheet" href="/console/assets/console.css" />
          <script src="/console/assets/console.js" defer />
        </head>
        <body>
          <a class="skip" href="#main">
            Skip to content
          </a>
          <header class="top">
            <a class="brand" href="/console">
              Phaselock console
            </a>
            {viewer ? (
              <>
                <nav aria-label="Console">
                  <ul>
                    {navFor(viewer.role).map((n) => (
                      <li>
                        <a href={n.href} aria-current={props.path === n.href ? "page" : undefined}>
                          {n.label}
                        </a>
                      </li>
                    ))}
                  </ul>
                </nav>
                <span class="who">
                  {viewer.role}
                  {viewer.campaignId ? ` · ${viewer.campaignId}` : ""}
                </span>
                <form method="post" action="/console/sign-out">
                  <Csrf viewer={viewer} />
                  <button type="submit" class="secondary small">
                    Sign out
                  </button>
                </form>
              </>
            ) : null}
          </header>
          <main id="main">
            <h1>{props.title}</h1>
            {props.flash ? <Notice kind={props.flash.kind}>{props.flash.text}</Notice> : null}
            {props.children}
          </main>
        </body>
      </html>
    </>
  );
}

export const Csrf = (props: { viewer: Viewer }) => (
  <input type="hidden" name="csrf" value={props.viewer.csrf} />
);

export const Notice = (props: { kind: Flash["kind"]; children?: Child }) => (
  <div class={`notice ${props.kind}`} role={props.kind === "error" ? "alert" : "status"}>
    {props.children}
  </div>
);

/** An API refusal in plain words, with every issue it names (rows for a CSV). */
export const ProblemNotice = (props: { problem: Problem; intro?: string | undefined }) => (
  <div class="notice error" role="alert">
    <p>
      <strong>{props.intro ?? plainWords(props.problem)}</strong>
      {props.problem.detail ? ` ${plainDetail(props.problem)}` : ""}
    </p>
    {props.problem.errors && props.problem.errors.length > 0 ? (
      <ul>
        {props.problem.errors.map((e) => (
          <li>{describeIssue(e)}</li>
        ))}
      </ul>
    ) : null}
  </div>
);

/** A table that scrolls sideways on a phone instead of overflowing the page. */
export const TableWrap = (props: { label: string; children?: Child }) => (
  <section class="table-wrap" aria-label={props.label} tabindex={0}>
    {props.children}
  </section>
);

/** An ISO instant as people read it, in UTC (the console's one zone), or a dash. */
export const when = (iso: string | null | undefined): string =>
  iso ? `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC` : "—";

/** A row's name, linked to its page under `/console/<section>/`, then its id. */
export const NamedLink = (props: { section: string; id: string; name: string }) => (
  <>
    <a href={`/console/${props.section}/${encodeURIComponent(props.id)}`}>{props.name}</a>{" "}
    <code>{props.id}</code>
  </>
);

export const Status = (props: { status: string }) => (
  <span class={`status status-${props.status}`}>{props.status}</span>
);

/** One column of a {@link DataTable}: its heading (also each cell's phone label) and its cell. */
export interface Column<T> {
  label: string;
  cell: (row: T) => Child;
  /** A number column, right-aligned. */
  num?: boolean;
}

/**
 * The console's responsive table: a heading row of column headers and, on a phone, each cell
 * labelled with its column (`data-label`). A `false` column is left out (a role's extra column).
 */
export function DataTable<T>(props: {
  label: string;
  columns: readonly (Column<T> | false)[];
  rows: readonly T[];
}) {
  const columns = props.columns.filter((col): col is Column<T> => col !== false);
  const num = (col: Column<T>) => (col.num ? "num" : undefined);
  return (
    <TableWrap label={props.label}>
      <table class="stack">
        <thead>
          <tr>
            {columns.map((col) => (
              <th scope="col" class={num(col)}>
                {col.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {props.rows.map((row) => (
            <tr>
              {columns.map((col) => (
                <td data-label={col.label} class={num(col)}>
                  {col.cell(row)}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </TableWrap>
  );
}

/**
 * A listing's three outcomes: the API refused (its problem, or `error`), nothing to show
 * (`empty`), or the items (`render`).
 */
export function ListResult<T>(props: {
  res: { ok: true; body: { items: readonly T[] } } | { ok: false; problem: Problem };
  empty: Child;
  error?: Child;
  render: (items: readonly T[]) => Child;
}) {
  const { res } = props;
  if (!res.ok) {
    // An unreachable database is the API's 503: say so, never the page's own "does not list…".
    const own = res.problem.code === "unavailable" ? undefined : props.error;
    return <>{own ?? <ProblemNotice problem={res.problem} />}</>;
  }
  return <>{res.body.items.length === 0 ? props.empty : props.render(res.body.items)}</>;
}

/** A confirmation form's buttons: the dangerous action, and Cancel back to where it came from. */
export const ConfirmActions = (props: { action: string; cancel: string }) => (
  <div class="actions">
    <button type="submit" class="danger">
      {props.action}
    </button>
    <a class="button secondary" href={props.cancel}>
      Cancel
    </a>
  </div>
);

/** A one-field GET form that goes to a record by its id (`name="id"`). */
export const IdForm = (props: {
  action: string;
  inputId: string;
  label: string;
  button: string;
  secondary?: boolean;
}) => (
  <form method="get" action={props.action} class="filters">
    <div>
      <label for={props.inputId}>{props.label}</label>
      <input type="text" id={props.inputId} name="id" required />
    </div>
    <div>
      <button type="submit" class={props.secondary ? "secondary" : undefined}>
        {props.button}
      </button>
    </div>
  </form>
);

/** The link to a listing's next page, where the API gave a cursor: `query` with that cursor. */
export function NextPageLink(props: {
  res: { ok: true; body: { nextCursor: string | null } } | { ok: false };
  path: string;
  query: URLSearchParams;
  label: string;
}) {
  const cursor = props.res.ok ? props.res.body.nextCursor : null;
  if (!cursor) return null;
  const query = new URLSearchParams(props.query);
  query.set("cursor", cursor);
  return (
    <p>
      <a href={`${props.path}?${query}`}>{props.label}</a>
    </p>
  );
}
