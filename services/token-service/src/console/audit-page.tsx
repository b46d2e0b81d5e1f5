/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { Hono } from "hono";
import { problemOf } from "./api.ts";
import type { ConsoleEnv } from "./env.ts";
import { DataTable, ListResult, NextPageLink, Notice, Status, when } from "./layout.tsx";
import type { Page } from "./links-page.tsx";
import { errorPage, forbiddenPage, page, refusedPage, statusFor } from "./render.tsx";

interface AuditEvent {
  seq: number;
  at: string;
  type: string;
  actor: string | null;
  campaignId: string | null;
  linkId: string | null;
  decision: "allow" | "deny" | null;
  reason: string | null;
}

type Verified =
  | { ok: true; events: number; head: string }
  | { ok: false; events: number; brokenAt: { seq: number; id: string; reason: string } };

const canRead = (role: string) => role === "admin" || role === "auditor";

export function registerAuditPages(con: Hono<ConsoleEnv>): void {
  con.get("/audit", async (c) => {
    if (!canRead(c.var.viewer.role)) return forbiddenPage(c);
    const q = c.req.query();
    const filters = {
      campaignId: (q.campaignId ?? "").trim(),
      linkId: (q.linkId ?? "").trim(),
      // Anything else is passed on, so the API refuses it (400) rather than the filter being dropped.
      decision: (q.decision ?? "").trim(),
      since: (q.since ?? "").trim(),
    };
    const query = new URLSearchParams({ limit: "100" });
    // `since` as typed: the API takes a date alone (`2020-03-01`) as well as an ISO instant.
    for (const [k, v] of Object.entries(filters)) if (v) query.set(k, v);
    if (q.cursor) query.set("cursor", q.cursor);
    const res = await c.var.api.call<Page<AuditEvent>>("GET", `/v1/audit?${query}`);
    const next = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
    const exportQuery = filters.since ? `?${new URLSearchParams({ since: filters.since })}` : "";
    return page(
      c,
      "Audit log",
      <>
        <div class="actions">
          <form method="get" action="/console/audit/verify">
            <button type="submit">Verify</button>
          </form>
          <a class="button secondary" href={`/console/audit/export${exportQuery}`} download>
            Download export (NDJSON)
          </a>
        </div>
        <p class="hint">
          Verify checks the whole hash chain. The export can be checked offline with{" "}
          <code>pnpm audit:verify-export FILE</code>.
        </p>
        <form method="get" action="/console/audit" class="filters">
          <div>
            <label for="a-campaign">Campaign</label>
            <input type="text" id="a-campaign" name="campaignId" value={filters.campaignId} />
          </div>
          <div>
            <label for="a-link">Link id</label>
            <input type="text" id="a-link" name="linkId" value={filters.linkId} />
          </div>
          <div>
            <label for="a-decision">Decision</label>
            <select id="a-decision" name="decision">
              <option value="">any</option>
              <option value="allow" selected={filters.decision === "allow"}>
                allow
              </option>
              <option value="deny" selected={filters.decision === "deny"}>
                deny
              </option>
            </select>
          </div>
          <div>
            <label for="a-since">Since (YYYY-MM-DD)</label>
            <input type="text" id="a-since" name="since" value={filters.since} />
          </div>
          <div>
            <button type="submit">Filter</button>
          </div>
        </form>
        <ListResult
          res={res}
          empty={<p>No events match.</p>}
          render={(items) => (
            <DataTable
              label="Audit events"
              rows={items}
              columns={[
                { label: "#", num: true, cell: (e) => e.seq },
                { label: "When", cell: (e) => when(e.at) },
                {
                  label: "Event",
                  cell: (e) => (
                    <>
                      <code>{e.type}</code>
                      {e.reason ? ` (${e.reason})` : ""}
                    </>
                  ),
                },
                { label: "Decision", cell: (e) => (e.decision ? <Status status={e.decision} /> : "—") },
                { label: "Actor", cell: (e) => <code>{e.actor ?? "—"}</code> },
                { label: "Campaign", cell: (e) => e.campaignId ?? "—" },
                { label: "Link", cell: (e) => <code>{e.linkId ?? "—"}</code> },
              ]}
            />
          )}
        />
        <NextPageLink res={res} path="/console/audit" query={next} label="Older events" />
      </>,
      { status: res.ok ? 200 : statusFor(res.status) },
    );
  });

  con.get("/audit/verify", async (c) => {
    if (!canRead(c.var.viewer.role)) return forbiddenPage(c);
    const res = await c.var.api.call<Verified>("GET", "/v1/audit/verify");
    if (!res.ok) return refusedPage(c, "Audit verification", res);
    const v = res.body;
    return page(
      c,
      "Audit verification",
      <>
        {v.ok ? (
          <Notice kind="ok">
            <strong>ok</strong>
            {`: all ${v.events} events chain unbroken. Head: `}
            <code>{v.head}</code>
          </Notice>
        ) : (
          <Notice kind="error">
            <strong>broken</strong>
            {`: the chain breaks at event #${v.brokenAt.seq} (${v.brokenAt.id}, ${v.brokenAt.reason}) after ${v.events} events. brokenAt: ${v.brokenAt.seq}`}
          </Notice>
        )}
        <p>
          <a href="/console/audit">Back to the audit log</a>
        </p>
      </>,
    );
  });

  con.get("/audit/export", async (c) => {
    if (!canRead(c.var.viewer.role)) return forbiddenPage(c);
    const since = (c.req.query("since") ?? "").trim();
    const q = since ? `?${new URLSearchParams({ since })}` : "";
    const res = await c.var.api.raw("GET", `/v1/audit/export${q}`, { accept: "application/x-ndjson" });
    // The API's refusal, at its status: 503 while the database is unreachable, not a bare 400.
    if (!res.ok)
      return refusedPage(c, "Audit export", {
        status: res.status,
        problem: problemOf(res, await res.text()),
      });
    if (!res.body) return errorPage(c, "Audit export", "The export was empty.", 400);
    return c.body(res.body, 200, {
      "Content-Type": "application/x-ndjson; charset=utf-8",
      "Content-Disposition": 'attachment; filename="audit-export.ndjson"',
    });
  });
}
