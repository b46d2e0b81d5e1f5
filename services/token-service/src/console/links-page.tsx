/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { Context, Hono } from "hono";
import { parseCsv } from "../csv.ts";
import { MAX_BATCH } from "../issuance.ts";
import { ID_PATTERN } from "../schemas.ts";
import { decodeSheet, NOT_UTF8, readVolunteerSheet } from "../volunteer-sheet.ts";
import type { ApiAnswer, Problem } from "./api.ts";
import type { ConsoleEnv } from "./env.ts";
import {
  ConfirmActions,
  Csrf,
  DataTable,
  ListResult,
  NextPageLink,
  Notice,
  Status,
  type Viewer,
  when,
} from "./layout.tsx";
import {
  done,
  field,
  forbiddenPage,
  formAgain,
  page,
  type RefusalStatus,
  refusedPage,
  statusFor,
} from "./render.tsx";

export interface LinkItem {
  id: string;
  campaignId: string;
  contestId: string;
  phase: string;
  volunteer: { ref: string; name: string | null };
  scopes: string[];
  status: string;
  uses: number;
  maxUses: number;
  expiresAt: string;
  lastSeenAt: string | null;
  devices?: number;
  activeSessions?: number;
}

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

const ISSUABLE_SCOPES = ["calls:read", "calls:write", "members:read"] as const;
const LINK_STATUSES = ["active", "revoked", "expired"] as const;

const canIssue = (v: Viewer) => v.role === "admin" || v.role === "coordinator";

/** The campaign a page acts on: a coordinator's own, or the one an admin names. */
export const campaignOf = (c: Context<ConsoleEnv>, named: string): string =>
  c.var.viewer.role === "coordinator" ? (c.var.viewer.campaignId ?? "") : named;

/** The API's own id rule: the console acts on every id the API accepts. */
const SLUG = ID_PATTERN;

/**
 * The phases of a campaign's contest links can still be issued for (those not ended: issuance
 * refuses the others, 409 phase_closed), the current one first so the form picks it; empty when
 * the API cannot tell (the form then asks for a name).
 */
async function phasesOf(c: Context<ConsoleEnv>, campaignId: string): Promise<string[]> {
  if (!SLUG.test(campaignId)) return [];
  const campaign = await c.var.api.call<{ contestId: string }>("GET", `/v1/campaigns/${campaignId}`);
  if (!campaign.ok) return [];
  const contest = await c.var.api.call<{
    phases: { name: string; endsAt: string }[];
    currentPhase: { name: string } | null;
  }>("GET", `/v1/contests/${encodeURIComponent(campaign.body.contestId)}`);
  if (!contest.ok) return [];
  const now = c.var.deps.clock.now().getTime();
  const open = contest.body.phases.filter((p) => Date.parse(p.endsAt) > now).map((p) => p.name);
  const current = contest.body.currentPhase?.name;
  return current !== undefined && open.includes(current)
    ? [current, ...open.filter((p) => p !== current)]
    : open;
}

/** An admin's choice of campaign: a select of those the API lists, else a field for its id. */
export function CampaignPicker(props: {
  id: string;
  list: ApiAnswer<Page<{ id: string; name: string }>>;
  selected?: string;
}) {
  const { list } = props;
  return (
    <>
      <label for={props.id}>Campaign</label>
      {list.ok && list.body.items.length > 0 ? (
        <select id={props.id} name="campaignId" required>
          {list.body.items.map((k) => (
            <option value={k.id} selected={k.id === props.selected}>{`${k.name} (${k.id})`}</option>
          ))}
        </select>
      ) : (
        <input type="text" id={props.id} name="campaignId" required value={props.selected ?? ""} />
      )}
    </>
  );
}

function UploadForm(props: {
  viewer: Viewer;
  campaignId: string;
  phases: string[];
  values?: Record<string, string>;
}) {
  const v = props.values ?? {};
  const scopes = new Set((v.scopes ?? "calls:read,calls:write").split(","));
  return (
    <form method="post" action="/console/links/issue" enctype="multipart/form-data">
      <Csrf viewer={props.viewer} />
      <fieldset>
        <legend>Volunteers</legend>
        <label for="sheet">Volunteers CSV</label>
        <p class="hint" id="sheet-hint">
          A header row with <code>ref</code> and optionally <code>name</code>; other columns (email, phone…)
          are carried through to the links file and never stored. Errors name the file's row (the header is
          row 1).
        </p>
        <input
          type="file"
          id="sheet"
          name="sheet"
          accept=".csv,text/csv"
          required
          aria-describedby="sheet-hint"
        />
      </fieldset>
      <fieldset>
        <legend>Links</legend>
        {props.viewer.role === "admin" ? (
          <>
            <label for="campaignId">Campaign</label>
            <input type="text" id="campaignId" name="campaignId" required value={props.campaignId} />
          </>
        ) : (
          <p>
            Campaign: <strong>{props.campaignId}</strong>
          </p>
        )}
        <label for="phase">Phase</label>
        {props.phases.length > 0 ? (
          <select id="phase" name="phase" required>
            {props.phases.map((p) => (
              <option value={p} selected={v.phase === p}>
                {p}
              </option>
            ))}
          </select>
        ) : (
          <input type="text" id="phase" name="phase" required value={v.phase ?? ""} />
        )}
        <fieldset>
          <legend>Scopes</legend>
          {ISSUABLE_SCOPES.map((s) => (
            <label class="inline">
              <input type="checkbox" name="scopes" value={s} checked={scopes.has(s)} /> {s}
            </label>
          ))}
        </fieldset>
        <label for="ttlDays">Valid for (days)</label>
        <p class="hint" id="ttl-hint">
          1 to 90; never past the end of the phase.
        </p>
        <input
          type="number"
          id="ttlDays"
          name="ttlDays"
          min={1}
          max={90}
          value={v.ttlDays ?? "7"}
          aria-describedby="ttl-hint"
        />
        <label for="maxUses">Uses per link</label>
        <input type="number" id="maxUses" name="maxUses" min={1} max={1000} value={v.maxUses ?? "5"} />
        <label class="inline">
          <input type="checkbox" name="reissue" value="true" checked={v.reissue === "true"} /> Reissue to
          volunteers who already hold an active link (their old link is revoked)
        </label>
        <p class="hint">
          Unticked, a volunteer who already holds an active link of the phase is skipped and reported.
        </p>
      </fieldset>
      <div class="actions">
        <button type="submit">Issue links</button>
      </div>
    </form>
  );
}

interface IssuedRow {
  ref: string;
  name: string;
  url: string;
  status: string;
  expiresAt: string;
}

/** The links file the API answered, as rows for the page (the file itself is kept for download). */
function rowsOf(csv: string): IssuedRow[] {
  const parsed = parseCsv(csv);
  if (!parsed.ok) return [];
  const [header, ...rows] = parsed.records;
  if (!header) return [];
  const col = (name: string) => header.cells.indexOf(name);
  const at = (cells: string[], name: string) => {
    const i = col(name);
    return i === -1 ? "" : (cells[i] ?? "");
  };
  return rows
    .filter((r) => r.cells.some((x) => x !== ""))
    .map((r) => ({
      ref: at(r.cells, "ref"),
      name: at(r.cells, "name"),
      url: at(r.cells, "url"),
      status: at(r.cells, "status") || "issued",
      expiresAt: at(r.cells, "expiresAt"),
    }));
}

export function registerLinkPages(con: Hono<ConsoleEnv>): void {
  con.get("/links", async (c) => {
    const { viewer, api } = c.var;
    if (!canIssue(viewer)) return forbiddenPage(c);
    const q = c.req.query();
    // A deep link names one volunteer exactly (`volunteer=`); the search box finds part of a ref or name.
    const volunteer = (q.volunteer ?? "").trim();
    const search = (q.q ?? "").trim();
    // An unknown status is passed on for the API to refuse (400), never silently dropped.
    const status = (q.status ?? "").trim();
    const campaignId = campaignOf(c, (q.campaignId ?? "").trim());
    const query = new URLSearchParams({ limit: "100" });
    if (viewer.role === "admin" && campaignId) query.set("campaignId", campaignId);
    if (volunteer) query.set("volunteer", volunteer);
    if (search) query.set("q", search);
    if (status) query.set("status", status);
    if (q.cursor) query.set("cursor", q.cursor);
    const res = await api.call<Page<LinkItem>>("GET", `/v1/links?${query}`);
    const next = new URLSearchParams(query);
    next.delete("limit");
    return page(
      c,
      viewer.role === "coordinator" ? `Links of ${viewer.campaignId}` : "Links",
      <>
        <form method="get" action="/console/links" class="filters">
          {viewer.role === "admin" ? (
            <div>
              <label for="f-campaign">Campaign</label>
              <input type="text" id="f-campaign" name="campaignId" value={campaignId} />
            </div>
          ) : null}
          <div>
            <label for="f-search">Search by volunteer ref or name</label>
            <input type="search" id="f-search" name="q" value={search || volunteer} maxlength={128} />
          </div>
          <div>
            <label for="f-status">Status</label>
            <select id="f-status" name="status">
              <option value="">any</option>
              {LINK_STATUSES.map((s) => (
                <option value={s} selected={status === s}>
                  {s}
                </option>
              ))}
            </select>
          </div>
          <div>
            <button type="submit">Search</button>
          </div>
        </form>
        <p>
          <a href="/console/links/new">Upload a volunteers CSV</a> to issue links.
        </p>
        <ListResult
          res={res}
          empty={<p>No links match.</p>}
          render={(items) => (
            <DataTable
              label="Links"
              rows={items}
              columns={[
                { label: "Ref", cell: (l) => <code>{l.volunteer.ref}</code> },
                { label: "Name", cell: (l) => l.volunteer.name ?? "" },
                viewer.role === "admin" && { label: "Campaign", cell: (l) => l.campaignId },
                { label: "Phase", cell: (l) => l.phase },
                { label: "Status", cell: (l) => <Status status={l.status} /> },
                { label: "Uses", num: true, cell: (l) => `${l.uses} / ${l.maxUses}` },
                { label: "Last seen", cell: (l) => when(l.lastSeenAt) },
                { label: "Devices", num: true, cell: (l) => l.devices ?? "—" },
                { label: "Active sessions", num: true, cell: (l) => l.activeSessions ?? "—" },
                {
                  label: "Actions",
                  cell: (l) =>
                    l.status === "active" ? (
                      <div class="actions">
                        <form method="get" action={`/console/links/${encodeURIComponent(l.id)}/revoke`}>
                          <button type="submit" class="danger small">
                            Revoke
                          </button>
                        </form>
                        {/* A link to its confirmation page (whose button revokes), so the row has one "Revoke" button. */}
                        <a
                          class="button secondary small"
                          href={`/console/volunteers/revoke?${new URLSearchParams({ ref: l.volunteer.ref, campaignId: l.campaignId })}`}
                        >
                          Revoke volunteer
                        </a>
                      </div>
                    ) : null,
                },
              ]}
            />
          )}
        />
        <NextPageLink res={res} path="/console/links" query={next} label="Next page" />
      </>,
      { status: res.ok ? 200 : statusFor(res.status) },
    );
  });

  con.get("/links/new", async (c) => {
    const { viewer } = c.var;
    if (!canIssue(viewer)) return forbiddenPage(c);
    const campaignId = campaignOf(c, (c.req.query("campaignId") ?? "").trim());
    if (viewer.role === "admin" && !campaignId) {
      // An admin first picks the campaign, so the form can offer its contest's phases.
      const list = await c.var.api.call<Page<{ id: string; name: string }>>("GET", "/v1/campaigns?limit=500");
      return page(
        c,
        "Issue links from a volunteers CSV",
        <form method="get" action="/console/links/new" class="filters">
          <div>
            <CampaignPicker id="pick-campaign" list={list} />
          </div>
          <div>
            <button type="submit">Continue</button>
          </div>
        </form>,
      );
    }
    return page(
      c,
      "Issue links from a volunteers CSV",
      <UploadForm viewer={viewer} campaignId={campaignId} phases={await phasesOf(c, campaignId)} />,
    );
  });

  con.post("/links/issue", async (c) => {
    const { viewer, api, form, sessions, session } = c.var;
    if (!canIssue(viewer)) return forbiddenPage(c);
    const campaignId = campaignOf(c, field(c, "campaignId"));
    const phase = field(c, "phase");
    const rawScopes = form.scopes;
    const scopes = (Array.isArray(rawScopes) ? rawScopes : rawScopes === undefined ? [] : [rawScopes]).filter(
      (s): s is string => typeof s === "string",
    );
    const ttlDays = field(c, "ttlDays") || "7";
    const maxUses = field(c, "maxUses") || "5";
    const reissue = field(c, "reissue") === "true";
    const values = { phase, scopes: scopes.join(","), ttlDays, maxUses, reissue: String(reissue) };
    const again = async (problem: Problem, status?: RefusalStatus) =>
      formAgain(
        c,
        "Issue links from a volunteers CSV",
        "Nothing was issued.",
        <UploadForm
          viewer={viewer}
          campaignId={campaignId}
          phases={await phasesOf(c, campaignId)}
          values={values}
        />,
        problem,
        status,
      );
    const file = form.sheet;
    if (!(file instanceof File) || file.size === 0) {
      return again({ code: "validation", detail: "Choose a volunteers CSV file." });
    }
    // Decoded as the API decodes it: a lossy file.text() would issue "Ren\uFFFDe" for a sheet saved
    // as Windows-1252, where the API itself refuses the same bytes.
    const text = decodeSheet(await file.arrayBuffer());
    if (text === undefined) return again({ code: "validation", detail: NOT_UTF8 });
    // A first pass here names every bad row before anything is sent; the API checks again.
    const sheet = readVolunteerSheet(text, { maxVolunteers: MAX_BATCH });
    if (!sheet.ok) {
      return again({
        code: "validation",
        detail: "Fix these rows of the file and upload it again:",
        errors: sheet.errors.map((e) => ({ row: e.row, detail: e.detail })),
      });
    }
    const ttl = Number(ttlDays);
    const uses = Number(maxUses);
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > 90 || !Number.isInteger(uses) || uses < 1 || uses > 1000) {
      return again({ code: "validation", detail: "Days must be 1 to 90 and uses 1 to 1000." });
    }
    if (scopes.length === 0) return again({ code: "validation", detail: "Choose at least one scope." });
    const query = new URLSearchParams({
      campaignId,
      phase,
      scopes: scopes.join(","),
      ttlSeconds: String(ttl * 86_400),
      maxUses: String(uses),
    });
    if (reissue) query.set("reissue", "true");
    let res = await api.call<string>("POST", `/v1/links/batch?${query}`, {
      body: text,
      contentType: "text/csv",
      accept: "text/csv",
    });
    if (!res.ok && res.status === 415) {
      // A token service without CSV upload: the same volunteers as JSON (no pass-through columns).
      res = await api.call<string>("POST", "/v1/links/batch", {
        json: {
          campaignId,
          phase,
          scopes,
          ttlSeconds: ttl * 86_400,
          maxUses: uses,
          volunteers: sheet.volunteers.map((v) => (v.name ? { ref: v.ref, name: v.name } : { ref: v.ref })),
        },
        accept: "text/csv",
      });
    }
    if (!res.ok) {
      const status = statusFor(res.status);
      return again(res.problem, status);
    }
    const filename = /filename="([^"]+)"/.exec(res.headers.get("content-disposition") ?? "")?.[1];
    const download = sessions.keepDownload(
      session,
      filename ?? `links-${campaignId}-${phase}.csv`,
      res.text,
      {
        campaignId,
        phase,
      },
    );
    // Shown on the page this redirects to: a reload, Back, or a phone reopening a discarded tab
    // asks for that page again, never re-posts the sheet (which would skip every volunteer and
    // show no link).
    return c.redirect(`/console/links/issued/${download}`, 303);
  });

  con.get("/links/issued/:id", (c) => {
    if (!canIssue(c.var.viewer)) return forbiddenPage(c);
    const download = c.req.param("id");
    const kept = c.var.session.downloads.get(download);
    if (!kept)
      return page(
        c,
        "Links no longer kept",
        <p>
          These links are no longer kept (a session keeps its last few files). Upload the sheet again with{" "}
          <em>Reissue</em> ticked to replace them.
        </p>,
        { status: 404 },
      );
    const campaignId = kept.campaignId ?? "";
    const phase = kept.phase ?? "";
    const rows = rowsOf(kept.csv);
    const issued = rows.filter((r) => r.url !== "");
    const skipped = rows.filter((r) => r.url === "");
    const reissued = rows.filter((r) => r.status === "reissued").length;
    return page(
      c,
      "Links issued",
      <>
        <Notice kind="ok">
          {`${issued.length} link${issued.length === 1 ? "" : "s"} issued for ${campaignId}, phase ${phase}.`}
          {reissued > 0
            ? ` ${reissued} of them replace${reissued === 1 ? "s" : ""} a link that is now revoked.`
            : ""}
          {skipped.length > 0
            ? ` ${skipped.length} volunteer${skipped.length === 1 ? "" : "s"} already held an active link and ${skipped.length === 1 ? "was" : "were"} skipped (tick "Reissue" to replace their links).`
            : ""}
        </Notice>
        <p>
          The links are kept only for this sign-in (its last few files): download the file for your mail merge
          now.
        </p>
        <div class="actions">
          <a class="button" href={`/console/links/download/${download}`} download>
            Download links (CSV)
          </a>
        </div>
        <DataTable
          label="Issued links"
          rows={rows}
          columns={[
            { label: "Ref", cell: (r) => <code>{r.ref}</code> },
            { label: "Name", cell: (r) => r.name },
            {
              label: "Link",
              cell: (r) =>
                r.url ? (
                  <>
                    <code>{r.url}</code>{" "}
                    <button
                      type="button"
                      class="secondary small copy"
                      data-copy={r.url}
                      hidden
                      aria-label={`Copy link of ${r.ref}`}
                    >
                      Copy link
                    </button>
                  </>
                ) : (
                  "—"
                ),
            },
            { label: "Status", cell: (r) => r.status },
          ]}
        />
      </>,
    );
  });

  con.get("/links/download/:id", (c) => {
    const kept = c.var.session.downloads.get(c.req.param("id"));
    if (!kept)
      return page(c, "Download gone", <p>This download has expired. Issue the links again.</p>, {
        status: 404,
      });
    return c.body(kept.csv, 200, {
      "Content-Type": "text/csv; charset=utf-8",
      "Content-Disposition": `attachment; filename="${kept.filename.replace(/[^A-Za-z0-9._-]/g, "_")}"`,
    });
  });

  con.get("/links/:id/revoke", async (c) => {
    const { viewer, api } = c.var;
    if (!canIssue(viewer)) return forbiddenPage(c);
    const res = await api.call<LinkItem>("GET", `/v1/links/${encodeURIComponent(c.req.param("id"))}`);
    if (!res.ok) return refusedPage(c, "Revoke a link", res);
    const l = res.body;
    return page(
      c,
      "Revoke a link",
      <RevokeConfirm
        viewer={viewer}
        what={`the link of ${l.volunteer.name ? `${l.volunteer.name} (${l.volunteer.ref})` : l.volunteer.ref} for campaign ${l.campaignId}, phase ${l.phase}`}
        detail={`It has been used ${l.uses} of ${l.maxUses} times; every session opened from it ends too.`}
        fields={{ scope: "link", linkId: l.id }}
      />,
    );
  });

  con.get("/volunteers/revoke", async (c) => {
    const { viewer, api } = c.var;
    if (!canIssue(viewer)) return forbiddenPage(c);
    const ref = (c.req.query("ref") ?? "").trim();
    const campaignId = campaignOf(c, (c.req.query("campaignId") ?? "").trim());
    const query = new URLSearchParams({ volunteer: ref, status: "active", limit: "500" });
    if (viewer.role === "admin") query.set("campaignId", campaignId);
    const res = await api.call<Page<LinkItem>>("GET", `/v1/links?${query}`);
    if (!res.ok) return refusedPage(c, "Revoke a volunteer", res);
    const n = res.body.items.length;
    return page(
      c,
      "Revoke a volunteer",
      <RevokeConfirm
        viewer={viewer}
        what={`every link of volunteer ${ref} in campaign ${campaignId}`}
        detail={`${n}${res.body.nextCursor ? "+" : ""} active link${n === 1 ? "" : "s"} will stop working at once, with their sessions; links issued to them later are not affected.`}
        fields={{ scope: "volunteer", volunteerRef: ref, campaignId }}
      />,
    );
  });

  con.post("/links/revoke", async (c) => {
    const { viewer, api } = c.var;
    if (!canIssue(viewer)) return forbiddenPage(c);
    const scope = field(c, "scope");
    const reason = field(c, "reason") || "revoked in the console";
    const body =
      scope === "link"
        ? { scope, linkId: field(c, "linkId"), reason }
        : {
            scope: "volunteer",
            volunteerRef: field(c, "volunteerRef"),
            campaignId: campaignOf(c, field(c, "campaignId")),
            reason,
          };
    const res = await api.call<{ matched: number }>("POST", "/v1/revocations", { json: body });
    if (!res.ok) {
      return refusedPage(c, "Revocation refused", res, "Nothing was revoked.");
    }
    const m = res.body.matched;
    return done(c, "/console/links", {
      kind: m === 0 ? "warn" : "ok",
      text:
        m === 0
          ? "Revoked, but it matched no link."
          : `Revoked: ${m} link${m === 1 ? "" : "s"} stopped working.`,
    });
  });
}

/** A confirmation that names exactly what will be revoked; works without JavaScript. */
export function RevokeConfirm(props: {
  viewer: Viewer;
  what: string;
  detail: string;
  fields: Record<string, string>;
  action?: string;
}) {
  return (
    <form method="post" action={props.action ?? "/console/links/revoke"}>
      <Csrf viewer={props.viewer} />
      {Object.entries(props.fields).map(([k, v]) => (
        <input type="hidden" name={k} value={v} />
      ))}
      <p>
        You are about to revoke <strong>{props.what}</strong>. {props.detail} This cannot be undone.
      </p>
      <label for="reason">Reason</label>
      <input type="text" id="reason" name="reason" required maxlength={500} value="revoked in the console" />
      <ConfirmActions action="Revoke" cancel="/console/links" />
    </form>
  );
}
