/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { Context, Hono } from "hono";
import { ID_PATTERN } from "../schemas.ts";
import { type ApiAnswer, plainWords } from "./api.ts";
import type { ConsoleEnv } from "./env.ts";
import { ConfirmActions, Csrf, DataTable, IdForm, NamedLink, Notice, when } from "./layout.tsx";
import type { LinkItem, Page } from "./links-page.tsx";
import { done, errorPage, field, forbiddenPage, page, refusedPage } from "./render.tsx";

interface Phase {
  name: string;
  startsAt: string;
  endsAt: string;
  memberData: boolean;
}
export interface Contest {
  id: string;
  name: string;
  phases: Phase[];
  currentPhase: Phase | null;
}
export interface Campaign {
  id: string;
  name: string;
  contestId: string;
  entitlements?: Record<string, string[]>;
  links?: Record<string, number>;
  limits?: Record<string, number>;
  contact?: string;
}

/** The API's own id rule: the console acts on every id the API accepts. */
const SLUG = ID_PATTERN;
const MAX_LINK_PAGES = 20;

/**
 * The timeline as an SVG: one bar per phase on a time axis, the campaigns entitled in each
 * phase listed under its bar, and a marker at now. Text alternatives: the title and the phase
 * table beside it. On a phone it keeps a readable width and scrolls sideways in its own box
 * (scaled to the screen, its labels were 6 px high).
 */
export function Timeline(props: { contest: Contest; campaigns: Campaign[]; now: Date }) {
  const { contest, campaigns, now } = props;
  const phases = contest.phases;
  if (phases.length === 0) return <p>No phases.</p>;
  const start = Math.min(...phases.map((p) => Date.parse(p.startsAt)));
  const end = Math.max(...phases.map((p) => Date.parse(p.endsAt)));
  const span = Math.max(end - start, 1);
  const W = 600;
  const left = 10;
  const inner = W - 2 * left;
  const x = (t: number) => left + ((t - start) / span) * inner;
  const rowH = 30;
  const entitledIn = (phase: string) =>
    campaigns.filter((c) => (c.entitlements?.[phase]?.length ?? 0) > 0).map((c) => c.id);
  const lines = Math.max(1, ...phases.map((p) => entitledIn(p.name).length));
  const H = 40 + rowH + 16 * lines + 30;
  const nowX = x(now.getTime());
  const nowIn = now.getTime() >= start && now.getTime() <= end;
  return (
    // Focusable, as it scrolls on a phone; unnamed, so the drawing's own title is its one label.
    <div class="timeline" tabindex={0}>
      <svg
        viewBox={`0 0 ${W} ${H}`}
        role="img"
        aria-labelledby={`tl-${contest.id}-title`}
        xmlns="http://www.w3.org/2000/svg"
      >
        <title id={`tl-${contest.id}-title`}>
          {`Timeline of ${contest.name}: ${phases.map((p) => `${p.name} ${when(p.startsAt)} to ${when(p.endsAt)}`).join("; ")}`}
        </title>
        <text x={left} y={16} font-size="13" fill="#1a1a1a">
          {when(new Date(start).toISOString())}
        </text>
        <text x={W - left} y={16} font-size="13" fill="#1a1a1a" text-anchor="end">
          {when(new Date(end).toISOString())}
        </text>
        {phases.map((p) => {
          const x0 = x(Date.parse(p.startsAt));
          const x1 = x(Date.parse(p.endsAt));
          const current = contest.currentPhase?.name === p.name;
          return (
            <g>
              <rect
                x={x0}
                y={30}
                width={Math.max(x1 - x0, 2)}
                height={rowH}
                rx={3}
                fill={p.memberData ? "#0b5394" : "#6b7785"}
                stroke={current ? "#f2a900" : "#ffffff"}
                stroke-width={current ? 4 : 1}
              />
              <text x={x0 + 4} y={50} font-size="13" fill="#ffffff">
                {p.name}
              </text>
              {entitledIn(p.name).map((id, j) => (
                <text x={x0 + 4} y={30 + rowH + 16 + j * 16} font-size="12" fill="#1a1a1a">
                  {id}
                </text>
              ))}
            </g>
          );
        })}
        {nowIn ? (
          <g>
            <line x1={nowX} x2={nowX} y1={22} y2={H - 14} stroke="#a4161a" stroke-width={2} />
            <text x={nowX} y={H - 2} font-size="12" fill="#a4161a" text-anchor="middle">
              now
            </text>
          </g>
        ) : null}
      </svg>
    </div>
  );
}

export async function listAll<T>(
  c: Context<ConsoleEnv>,
  path: string,
): Promise<{ ok: true; items: T[] } | { ok: false; status: number }> {
  const items: T[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const res: ApiAnswer<Page<T>> = await c.var.api.call<Page<T>>(
      "GET",
      `${path}${sep}limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
    );
    if (!res.ok) return { ok: false, status: res.status };
    items.push(...res.body.items);
    cursor = res.body.nextCursor;
    pages += 1;
  } while (cursor && pages < MAX_LINK_PAGES);
  return { ok: true, items };
}

/** The contest's campaigns with their entitlements, when the API lists them. */
export async function campaignsOf(c: Context<ConsoleEnv>, contestId: string): Promise<Campaign[]> {
  const list = await listAll<Campaign>(c, `/v1/campaigns?contestId=${encodeURIComponent(contestId)}`);
  if (!list.ok) return [];
  const full: Campaign[] = [];
  for (const item of list.items) {
    if (item.entitlements) {
      full.push(item);
      continue;
    }
    const one = await c.var.api.call<Campaign>("GET", `/v1/campaigns/${encodeURIComponent(item.id)}`);
    full.push(one.ok ? one.body : item);
  }
  return full;
}

export function registerContestPages(con: Hono<ConsoleEnv>): void {
  con.get("/contests", async (c) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const list = await listAll<Contest>(c, "/v1/contests");
    // A database that cannot be reached is the API's 503, not "this service lists no contests".
    const down = !list.ok && list.status >= 500;
    const now = c.var.deps.clock.now();
    const open = (
      <IdForm action="/console/contests/open" inputId="contestId" label="Contest id" button="Open" />
    );
    return page(
      c,
      "Contests",
      <>
        {list.ok ? (
          list.items.length === 0 ? (
            <p>No contests yet.</p>
          ) : (
            <>
              <DataTable
                label="Contests"
                rows={list.items}
                columns={[
                  {
                    label: "Contest",
                    cell: (k) => <NamedLink section="contests" id={k.id} name={k.name} />,
                  },
                  { label: "Phases", cell: (k) => k.phases.map((p) => p.name).join(", ") },
                  { label: "Current phase", cell: (k) => k.currentPhase?.name ?? "closed" },
                ]}
              />
              <h2>Timelines</h2>
              <p class="hint">
                Blue: member data may be reached; grey: no member data. Open a contest to see its campaigns
                and to switch a phase off.
              </p>
              {list.items.map((k) => (
                <>
                  <h3>{k.name}</h3>
                  <Timeline contest={k} campaigns={[]} now={now} />
                </>
              ))}
            </>
          )
        ) : down ? (
          <Notice kind="error">{plainWords({ code: "unavailable" })}</Notice>
        ) : (
          <Notice kind="info">This token service does not list contests; open one by its id.</Notice>
        )}
        <h2>Open a contest</h2>
        {open}
      </>,
      { status: down ? 503 : 200 },
    );
  });

  con.get("/contests/open", (c) => {
    const id = (c.req.query("id") ?? "").trim();
    return c.redirect(`/console/contests/${encodeURIComponent(id)}`, 303);
  });

  con.get("/contests/:id", async (c) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const id = c.req.param("id");
    const res = await c.var.api.call<Contest>("GET", `/v1/contests/${encodeURIComponent(id)}`);
    if (!res.ok) return refusedPage(c, "Contest", res);
    const contest = res.body;
    const now = c.var.deps.clock.now();
    const campaigns = await campaignsOf(c, contest.id);
    return page(
      c,
      `${contest.name}`,
      <>
        <p>
          Contest <code>{contest.id}</code>; current phase:{" "}
          <strong>{contest.currentPhase ? contest.currentPhase.name : "none (closed)"}</strong>.
        </p>
        <Timeline contest={contest} campaigns={campaigns} now={now} />
        <p class="hint">
          Blue: member data may be reached; grey: no member data. Campaigns listed under a phase are entitled
          in it.
        </p>
        <h2>Phases</h2>
        <DataTable
          label="Phases"
          rows={contest.phases}
          columns={[
            { label: "Phase", cell: (p) => p.name },
            { label: "Starts", cell: (p) => when(p.startsAt) },
            { label: "Ends", cell: (p) => when(p.endsAt) },
            { label: "Member data", cell: (p) => (p.memberData ? "yes" : "no") },
            {
              label: "Actions",
              // Only the running phase can be switched off: a later one is moved with the timeline.
              cell: (p) =>
                contest.currentPhase?.name === p.name ? (
                  <form
                    method="get"
                    action={`/console/contests/${encodeURIComponent(contest.id)}/phases/${encodeURIComponent(p.name)}/end`}
                  >
                    <button type="submit" class="danger small">
                      Switch phase off
                    </button>
                  </form>
                ) : Date.parse(p.endsAt) <= now.getTime() ? (
                  "ended"
                ) : (
                  "not started"
                ),
            },
          ]}
        />
        {campaigns.length > 0 ? (
          <>
            <h2>Campaigns</h2>
            <ul>
              {campaigns.map((k) => (
                <li>
                  <a href={`/console/campaigns/${encodeURIComponent(k.id)}`}>{k.name}</a> <code>{k.id}</code>
                </li>
              ))}
            </ul>
          </>
        ) : null}
      </>,
    );
  });

  con.get("/contests/:id/phases/:phase/end", async (c) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const id = c.req.param("id");
    const phase = c.req.param("phase");
    const res = await c.var.api.call<Contest>("GET", `/v1/contests/${encodeURIComponent(id)}`);
    const p = res.ok ? res.body.phases.find((x) => x.name === phase) : undefined;
    if (!res.ok || !p) return errorPage(c, "Switch phase off", "No such contest or phase.", 404);
    const links = await listAll<LinkItem>(c, "/v1/links?status=active");
    const active = links.ok
      ? links.items.filter((l) => l.contestId === id && l.phase === phase).length
      : null;
    return page(
      c,
      "Switch phase off",
      <form
        method="post"
        action={`/console/contests/${encodeURIComponent(id)}/phases/${encodeURIComponent(phase)}/end`}
      >
        <Csrf viewer={c.var.viewer} />
        <p>
          You are about to end phase <strong>{phase}</strong> of contest <strong>{res.body.name}</strong> (
          <code>{id}</code>) now, instead of at {when(p.endsAt)}.{" "}
          {active === null ? "Its links" : `${active} active link${active === 1 ? "" : "s"} of this phase`}{" "}
          will be refused for good, with every session opened from them, even if the timeline is changed
          later.
        </p>
        <label for="reason">Reason</label>
        {/* Filled in, as the revocation pages' are: the confirming click alone must do it. */}
        <input
          type="text"
          id="reason"
          name="reason"
          required
          maxlength={500}
          value="switched off in the console"
        />
        <ConfirmActions action="Switch phase off" cancel={`/console/contests/${encodeURIComponent(id)}`} />
      </form>,
    );
  });

  con.post("/contests/:id/phases/:phase/end", async (c) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const id = c.req.param("id");
    const phase = c.req.param("phase");
    if (!SLUG.test(id) || !SLUG.test(phase))
      return errorPage(c, "Switch phase off", "No such contest or phase.", 404);
    const res = await c.var.api.call("POST", `/v1/contests/${id}/phases/${phase}/end`, {
      json: { reason: field(c, "reason") },
    });
    if (!res.ok) return refusedPage(c, "Switch phase off", res, "The phase was not ended.");
    return done(c, `/console/contests/${id}`, { kind: "ok", text: `Phase ${phase} is switched off.` });
  });
}
