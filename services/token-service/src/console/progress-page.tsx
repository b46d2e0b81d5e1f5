/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { Context, Hono } from "hono";
import type { ApiAnswer, Problem } from "./api.ts";
import type { ConsoleEnv } from "./env.ts";
import { DataTable, Notice, ProblemNotice, when } from "./layout.tsx";
import { CampaignPicker, campaignOf, type LinkItem, type Page } from "./links-page.tsx";
import { forbiddenPage, page, statusFor } from "./render.tsx";

/** Links read for the progress view: enough for the largest batch the API issues. */
const MAX_PAGES = 20;

interface VolunteerProgress {
  ref: string;
  name: string | null;
  links: number;
  opened: number;
  uses: number;
  activeSessions: number | null;
  calls: number | null;
  lastSeenAt: string | null;
}

interface ProgressRoute {
  items: {
    ref: string;
    name: string | null;
    links: number;
    opened: number;
    activeSessions: number;
    callsMade: number;
  }[];
  nextCursor: string | null;
}

/**
 * Progress by volunteer: from the API's progress route when it has one, else folded from the
 * campaign's links (opened and last seen; sessions and calls then unknown).
 */
async function progressOf(
  c: Context<ConsoleEnv>,
  campaignId: string,
): Promise<
  { ok: true; rows: VolunteerProgress[]; partial: boolean } | { ok: false; problem: Problem; status: number }
> {
  const { api } = c.var;
  const base = `/v1/campaigns/${encodeURIComponent(campaignId)}/progress?limit=500`;
  const route = await api.call<ProgressRoute>("GET", base);
  if (route.ok && Array.isArray(route.body.items)) {
    const items = [...route.body.items];
    let next = route.body.nextCursor;
    for (let pages = 1; next && pages < MAX_PAGES; pages++) {
      const more: ApiAnswer<ProgressRoute> = await api.call<ProgressRoute>(
        "GET",
        `${base}&cursor=${encodeURIComponent(next)}`,
      );
      if (!more.ok) return { ok: false, problem: more.problem, status: more.status };
      items.push(...more.body.items);
      next = more.body.nextCursor;
    }
    return {
      ok: true,
      partial: false,
      rows: items.map((i) => ({
        ref: i.ref,
        name: i.name,
        links: i.links,
        opened: i.opened,
        uses: i.opened,
        activeSessions: i.activeSessions,
        calls: i.callsMade,
        lastSeenAt: null,
      })),
    };
  }
  if (!route.ok && route.status !== 404) return { ok: false, problem: route.problem, status: route.status };
  const byRef = new Map<string, VolunteerProgress>();
  let cursor: string | null = null;
  let pages = 0;
  do {
    const q = new URLSearchParams({ limit: "500" });
    if (c.var.viewer.role === "admin") q.set("campaignId", campaignId);
    if (cursor) q.set("cursor", cursor);
    const res = await api.call<Page<LinkItem>>("GET", `/v1/links?${q}`);
    if (!res.ok) return { ok: false, problem: res.problem, status: res.status };
    for (const l of res.body.items) {
      const row = byRef.get(l.volunteer.ref) ?? {
        ref: l.volunteer.ref,
        name: l.volunteer.name,
        links: 0,
        opened: 0,
        uses: 0,
        activeSessions: l.activeSessions === undefined ? null : 0,
        calls: null,
        lastSeenAt: null,
      };
      row.links += 1;
      if (l.uses > 0) row.opened += 1;
      row.uses += l.uses;
      if (row.activeSessions !== null && l.activeSessions !== undefined)
        row.activeSessions += l.activeSessions;
      if (l.lastSeenAt && (!row.lastSeenAt || l.lastSeenAt > row.lastSeenAt)) row.lastSeenAt = l.lastSeenAt;
      byRef.set(l.volunteer.ref, row);
    }
    cursor = res.body.nextCursor;
    pages += 1;
  } while (cursor && pages < MAX_PAGES);
  const rows = [...byRef.values()].sort((a, b) => (b.lastSeenAt ?? "").localeCompare(a.lastSeenAt ?? ""));
  return { ok: true, rows, partial: true };
}

const sum = (rows: VolunteerProgress[], f: (r: VolunteerProgress) => number | null): number | null =>
  rows.some((r) => f(r) === null) ? null : rows.reduce((n, r) => n + (f(r) ?? 0), 0);

function ProgressTable(props: { rows: VolunteerProgress[]; partial: boolean; at: string }) {
  const { rows } = props;
  const opened = rows.filter((r) => r.opened > 0).length;
  const linksOpened = rows.reduce((n, r) => n + r.opened, 0);
  const links = rows.reduce((n, r) => n + r.links, 0);
  const sessions = sum(rows, (r) => r.activeSessions);
  const calls = sum(rows, (r) => r.calls);
  return (
    <>
      <div class="cards">
        <div class="card">
          <b>{`${linksOpened} / ${links}`}</b> links opened
        </div>
        <div class="card">
          <b>{`${opened} / ${rows.length}`}</b> volunteers opened their link
        </div>
        <div class="card">
          <b>{sessions ?? "—"}</b> active sessions
        </div>
        <div class="card">
          <b>{calls ?? "—"}</b> calls made
        </div>
      </div>
      <p class="hint" data-stamp>{`Updated ${when(props.at)}.`}</p>
      {rows.length === 0 ? (
        <p>No links issued yet.</p>
      ) : (
        <DataTable
          label="Progress by volunteer"
          rows={rows}
          columns={[
            {
              label: "Volunteer",
              cell: (r) => (
                <>
                  <code>{r.ref}</code> {r.name ?? ""}
                </>
              ),
            },
            { label: "Links", num: true, cell: (r) => r.links },
            { label: "Opened", num: true, cell: (r) => r.opened },
            { label: "Active sessions", num: true, cell: (r) => r.activeSessions ?? "—" },
            { label: "Calls made", num: true, cell: (r) => r.calls ?? "—" },
            props.partial && { label: "Last seen", cell: (r) => when(r.lastSeenAt) },
          ]}
        />
      )}
      {props.partial && calls === null ? (
        <p class="hint">Calls made are not reported by this token service yet.</p>
      ) : null}
    </>
  );
}

export function registerProgressPages(con: Hono<ConsoleEnv>): void {
  const campaignFor = (c: Context<ConsoleEnv>) => campaignOf(c, (c.req.query("campaignId") ?? "").trim());

  con.get("/progress", async (c) => {
    const { viewer } = c.var;
    if (viewer.role !== "admin" && viewer.role !== "coordinator") return forbiddenPage(c);
    const campaignId = campaignFor(c);
    const picker =
      viewer.role === "admin" ? (
        <form method="get" action="/console/progress" class="filters">
          <div>
            <CampaignPicker
              id="p-campaign"
              list={
                await c.var.api.call<Page<{ id: string; name: string }>>("GET", "/v1/campaigns?limit=500")
              }
              selected={campaignId}
            />
          </div>
          <div>
            <button type="submit">Show</button>
          </div>
        </form>
      ) : null;
    if (!campaignId)
      return page(
        c,
        "Progress",
        <>
          {picker}
          <p>Choose a campaign.</p>
        </>,
      );
    const result = await progressOf(c, campaignId);
    const at = c.var.deps.clock.now().toISOString();
    return page(
      c,
      `Progress of ${campaignId}`,
      <>
        {picker}
        {result.ok ? (
          <div
            data-refresh={`/console/progress/fragment?${new URLSearchParams(viewer.role === "admin" ? { campaignId } : {})}`}
            data-every="5000"
            aria-live="polite"
          >
            <ProgressTable rows={result.rows} partial={result.partial} at={at} />
          </div>
        ) : (
          <ProblemNotice problem={result.problem} />
        )}
        <Notice kind="info">
          This view refreshes itself every few seconds; without JavaScript, reload the page.
        </Notice>
      </>,
      { status: result.ok ? 200 : statusFor(result.status) },
    );
  });

  con.get("/progress/fragment", async (c) => {
    const { viewer } = c.var;
    if (viewer.role !== "admin" && viewer.role !== "coordinator") return c.text("Forbidden", 403);
    const campaignId = campaignFor(c);
    const result = await progressOf(c, campaignId);
    if (!result.ok) return c.text("Unavailable", statusFor(result.status));
    return c.html(
      <ProgressTable rows={result.rows} partial={result.partial} at={c.var.deps.clock.now().toISOString()} />,
    );
  });
}
