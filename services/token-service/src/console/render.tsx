/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { Context } from "hono";
import type { Child } from "hono/jsx";
import type { Problem } from "./api.ts";
import type { ConsoleEnv } from "./env.ts";
import { type Flash, Layout, Notice, ProblemNotice } from "./layout.tsx";

/** What a page handler renders: the layout around its content, with the viewer's navigation. */
export function page(
  c: Context<ConsoleEnv>,
  title: string,
  body: Child,
  opts: { status?: 200 | 201 | 400 | 403 | 404 | 409 | 410 | 422 | 500 | 503; flash?: Flash } = {},
) {
  const flash = opts.flash ?? c.var.session.flash;
  c.var.session.flash = undefined;
  return c.html(
    <Layout title={title} viewer={c.var.viewer} path={c.req.path} flash={flash}>
      {body}
    </Layout>,
    opts.status ?? 200,
  );
}

/** The statuses a page answers a refusal with. */
export type RefusalStatus = 400 | 403 | 404 | 409 | 422 | 503;

/** A page's status for an API refusal: the same where a page can answer it, else 400 (or 503). */
export const statusFor = (api: number): RefusalStatus =>
  ([400, 403, 404, 409, 422, 503] as const).find((s) => s === api) ?? (api >= 500 ? 503 : 400);

/**
 * A refused form, the console's or the API's refusal: the form again, filled in as it was, under
 * what to fix (after `intro`, which says nothing was done), so no one types it all again.
 */
export const formAgain = (
  c: Context<ConsoleEnv>,
  title: string,
  intro: string,
  form: Child,
  problem: Problem,
  status: RefusalStatus = 400,
) =>
  page(
    c,
    title,
    <>
      <ProblemNotice problem={problem} intro={intro} />
      {form}
    </>,
    { status },
  );

/** After a POST: back to a page (303, so a reload does not repeat the action), with a message. */
export function done(c: Context<ConsoleEnv>, to: string, flash: Flash) {
  c.var.session.flash = flash;
  return c.redirect(to, 303);
}

/** The 403 page for a role that may not use a page (the API would refuse it the same way). */
export const forbiddenPage = (c: Context<ConsoleEnv>) =>
  page(
    c,
    "Not available to your role",
    <p>
      Your API key has the <strong>{c.var.viewer.role}</strong> role, which may not use this page.
    </p>,
    { status: 403 },
  );

/** A form field as a trimmed string ("" when absent or a file). */
export const field = (c: Context<ConsoleEnv>, name: string): string => {
  const v = c.var.form[name];
  return typeof v === "string" ? v.trim() : "";
};

/** The page for an API refusal: the problem in plain words (after `intro`), at the matching status. */
export const refusedPage = (
  c: Context<ConsoleEnv>,
  title: string,
  res: { status: number; problem: Problem },
  intro?: string,
) => page(c, title, <ProblemNotice problem={res.problem} intro={intro} />, { status: statusFor(res.status) });

/** The page for a request the console refuses before the API is asked (a bad id: 404). */
export const errorPage = (c: Context<ConsoleEnv>, title: string, text: string, status: 400 | 404) =>
  page(c, title, <Notice kind="error">{text}</Notice>, { status });
