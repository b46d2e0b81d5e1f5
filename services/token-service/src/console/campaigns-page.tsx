/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import type { Hono } from "hono";
import { ID_PATTERN } from "../schemas.ts";
import type { Problem } from "./api.ts";
import type { Campaign, Contest } from "./contests-page.tsx";
import type { ConsoleEnv } from "./env.ts";
import { Csrf, DataTable, IdForm, ListResult, NamedLink, Notice, TableWrap, type Viewer } from "./layout.tsx";
import type { Page } from "./links-page.tsx";
import {
  done,
  errorPage,
  field,
  forbiddenPage,
  formAgain,
  page,
  type RefusalStatus,
  refusedPage,
  statusFor,
} from "./render.tsx";

const SCOPES = ["calls:read", "calls:write", "members:read", "members:export"] as const;
/** The API's own id rule: the console acts on every id the API accepts. */
const SLUG = ID_PATTERN;

/** The form that creates or updates a campaign, filled in with `values` when it comes back refused. */
function CampaignForm(props: {
  viewer: Viewer;
  values?: Partial<Record<"id" | "name" | "contestId" | "contact", string>>;
}) {
  const v = props.values ?? {};
  return (
    <>
      <h2>Create or update a campaign</h2>
      <form method="post" action="/console/campaigns">
        <Csrf viewer={props.viewer} />
        <label for="new-id">Campaign id</label>
        <input
          type="text"
          id="new-id"
          name="id"
          required
          pattern="[A-Za-z0-9][A-Za-z0-9._\-]{0,63}"
          value={v.id ?? ""}
        />
        <label for="new-name">Name</label>
        <input type="text" id="new-name" name="name" required maxlength={200} value={v.name ?? ""} />
        <label for="new-contest">Contest id</label>
        <input type="text" id="new-contest" name="contestId" required value={v.contestId ?? ""} />
        <label for="new-contact">Contact for volunteers (optional)</label>
        <p class="hint" id="new-contact-hint">
          Whom volunteers ask when a link is refused, e.g. "Jo Bloggs, jo@example.org". Left blank, an
          existing campaign keeps its contact; its rate limits are always kept.
        </p>
        <input
          type="text"
          id="new-contact"
          name="contact"
          maxlength={200}
          aria-describedby="new-contact-hint"
          value={v.contact ?? ""}
        />
        <div class="actions">
          <button type="submit">Save campaign</button>
        </div>
      </form>
    </>
  );
}

export function registerCampaignPages(con: Hono<ConsoleEnv>): void {
  con.get("/campaigns", async (c) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const res = await c.var.api.call<Page<Campaign>>("GET", "/v1/campaigns?limit=500");
    return page(
      c,
      "Campaigns",
      <>
        <ListResult
          res={res}
          empty={<p>No campaigns yet.</p>}
          error={<Notice kind="info">This token service does not list campaigns; open one by its id.</Notice>}
          render={(items) => (
            <DataTable
              label="Campaigns"
              rows={items}
              columns={[
                {
                  label: "Campaign",
                  cell: (k) => <NamedLink section="campaigns" id={k.id} name={k.name} />,
                },
                {
                  label: "Contest",
                  cell: (k) => (
                    <a href={`/console/contests/${encodeURIComponent(k.contestId)}`}>{k.contestId}</a>
                  ),
                },
              ]}
            />
          )}
        />
        <h2>Open a campaign</h2>
        <IdForm action="/console/campaigns/open" inputId="campaignId" label="Campaign id" button="Open" />
        <CampaignForm viewer={c.var.viewer} />
      </>,
      { status: !res.ok && res.status >= 500 ? 503 : 200 },
    );
  });

  con.get("/campaigns/open", (c) =>
    c.redirect(`/console/campaigns/${encodeURIComponent((c.req.query("id") ?? "").trim())}`, 303),
  );

  con.post("/campaigns", async (c) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const id = field(c, "id");
    const values = {
      id,
      name: field(c, "name"),
      contestId: field(c, "contestId"),
      contact: field(c, "contact"),
    };
    const again = (problem: Problem, status?: RefusalStatus) =>
      formAgain(
        c,
        "Campaigns",
        "The campaign was not saved.",
        <CampaignForm viewer={c.var.viewer} values={values} />,
        problem,
        status,
      );
    if (!SLUG.test(id))
      return again({
        code: "validation",
        detail: "A campaign id is 1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit.",
      });
    // PUT replaces the whole campaign: an update from this form keeps what the form does not
    // show (rate limits) and the contact unless a new one is written.
    const existing = await c.var.api.call<Campaign>("GET", `/v1/campaigns/${id}`);
    if (!existing.ok && existing.status !== 404) return again(existing.problem, statusFor(existing.status));
    const before = existing.ok ? existing.body : undefined;
    const contact = values.contact || before?.contact;
    const limits = before?.limits && Object.keys(before.limits).length > 0 ? before.limits : undefined;
    const res = await c.var.api.call("PUT", `/v1/campaigns/${id}`, {
      json: {
        name: values.name,
        contestId: values.contestId,
        ...(limits ? { limits } : {}),
        ...(contact ? { contact } : {}),
      },
    });
    if (!res.ok) return again(res.problem, statusFor(res.status));
    return done(c, `/console/campaigns/${id}`, { kind: "ok", text: `Campaign ${id} saved.` });
  });

  con.get("/campaigns/:id", async (c) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const id = c.req.param("id");
    const res = await c.var.api.call<Campaign>("GET", `/v1/campaigns/${encodeURIComponent(id)}`);
    if (!res.ok) return refusedPage(c, "Campaign", res);
    const k = res.body;
    const contest = await c.var.api.call<Contest>("GET", `/v1/contests/${encodeURIComponent(k.contestId)}`);
    const phases = contest.ok ? contest.body.phases.map((p) => p.name) : Object.keys(k.entitlements ?? {});
    const ent = k.entitlements ?? {};
    return page(
      c,
      `${k.name}`,
      <>
        <p>
          Campaign <code>{k.id}</code> in contest{" "}
          <a href={`/console/contests/${encodeURIComponent(k.contestId)}`}>{k.contestId}</a>.
        </p>
        <p>
          Volunteers whose link is refused are told to ask:{" "}
          <strong>{k.contact ?? "the coordinator who sent you the link"}</strong>.
        </p>
        {k.links ? (
          <p>
            Links:{" "}
            {Object.entries(k.links)
              .map(([s, n]) => `${n} ${s}`)
              .join(", ") || "none"}
            . <a href={`/console/links?campaignId=${encodeURIComponent(k.id)}`}>See the links</a>
          </p>
        ) : null}
        <h2>Entitlements</h2>
        <p class="hint">
          What the campaign may reach in each phase. Tick the scopes and save a row; withdraw clears it.
        </p>
        <TableWrap label="Entitlements matrix">
          {/* Stacked on a phone, as every console table: a row per phase, Save beside its boxes. */}
          <table class="stack">
            <thead>
              <tr>
                <th scope="col">Phase</th>
                {SCOPES.map((s) => (
                  <th scope="col">{s}</th>
                ))}
                <th scope="col">Actions</th>
              </tr>
            </thead>
            <tbody>
              {phases.map((p) => {
                const held = new Set(ent[p] ?? []);
                const formId = `ent-${p}`;
                return (
                  <tr>
                    <th scope="row">{p}</th>
                    {SCOPES.map((s) => (
                      <td data-label={s}>
                        <input
                          type="checkbox"
                          form={formId}
                          name="scopes"
                          value={s}
                          checked={held.has(s)}
                          aria-label={`${s} in ${p}`}
                        />
                      </td>
                    ))}
                    <td data-label="Actions">
                      <form
                        id={formId}
                        method="post"
                        action={`/console/campaigns/${encodeURIComponent(k.id)}/entitlements`}
                      >
                        <Csrf viewer={c.var.viewer} />
                        <input type="hidden" name="phase" value={p} />
                        <button type="submit" class="small" name="action" value="grant">
                          Save
                        </button>{" "}
                        <button type="submit" class="secondary small" name="action" value="withdraw">
                          Withdraw
                        </button>
                      </form>
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </TableWrap>
      </>,
    );
  });

  con.post("/campaigns/:id/entitlements", async (c) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const id = c.req.param("id");
    const phase = field(c, "phase");
    if (!SLUG.test(id) || !SLUG.test(phase))
      return errorPage(c, "Entitlements", "No such campaign or phase.", 404);
    const raw = c.var.form.scopes;
    const scopes = (Array.isArray(raw) ? raw : raw === undefined ? [] : [raw]).filter(
      (s): s is string => typeof s === "string",
    );
    const withdraw = field(c, "action") === "withdraw" || scopes.length === 0;
    const path = `/v1/campaigns/${id}/entitlements/${phase}`;
    const res = withdraw
      ? await c.var.api.call("DELETE", path)
      : await c.var.api.call("PUT", path, { json: { scopes } });
    if (!res.ok) return refusedPage(c, "Entitlements", res, "Nothing changed.");
    return done(c, `/console/campaigns/${id}`, {
      kind: "ok",
      text: withdraw ? `Entitlement of ${phase} withdrawn.` : `${phase}: ${scopes.join(", ")} granted.`,
    });
  });
}
