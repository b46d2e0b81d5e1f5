/** @jsxRuntime automatic */
/** @jsxImportSource hono/jsx */
import {
  REVOCATION_FIELDS,
  REVOCATION_RULES,
  REVOCATION_SCOPES,
  type RevocationField,
  type RevocationScope,
} from "@phaselock/policy";
import type { Context, Hono } from "hono";
import type { Child } from "hono/jsx";
import type { Problem } from "./api.ts";
import { listAll } from "./contests-page.tsx";
import type { ConsoleEnv } from "./env.ts";
import {
  ConfirmActions,
  Csrf,
  DataTable,
  IdForm,
  ListResult,
  Notice,
  ProblemNotice,
  type Viewer,
  when,
} from "./layout.tsx";
import type { LinkItem, Page } from "./links-page.tsx";
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

interface ApiKey {
  id: string;
  role: string;
  campaignId: string | null;
  label: string | null;
  createdAt: string;
  lastUsedAt: string | null;
}

interface Revocation {
  id: string;
  scope: string;
  linkId: string | null;
  volunteerRef: string | null;
  campaignId: string | null;
  contestId: string | null;
  phase: string | null;
  reason: string;
  actor: string;
  effectiveAt?: string;
  createdAt?: string;
}

interface DeadLinkRow {
  campaignId: string | null;
  issuedBy: string | null;
  reason: string;
  attempts: number;
  links: number;
  lastAt: string;
}

const ID = /^[A-Za-z0-9_-]{1,100}$/;
const isScope = (s: string): s is RevocationScope => REVOCATION_SCOPES.some((x) => x === s);

/** Each revocation scope as the form offers it (also what a refusal names). */
const SCOPE_LABEL: Record<RevocationScope, string> = {
  link: "one link (link id)",
  volunteer: "a volunteer (ref, optionally in one campaign)",
  campaign: "a campaign (every link of it)",
  phase: "a phase of a contest",
  contest: "a contest",
  all: "every link issued so far",
};

/** Each revocation field's label on the form. */
const FIELD_LABEL: Record<RevocationField, string> = {
  linkId: "Link id",
  volunteerRef: "Volunteer ref",
  campaignId: "Campaign id",
  contestId: "Contest id",
  phase: "Phase",
};

/** The form that creates an API key, filled in with `values` when it comes back refused. */
function ApiKeyForm(props: { viewer: Viewer; values?: { role: string; campaignId: string; label: string } }) {
  const v = props.values;
  return (
    <>
      <h2>Create a key</h2>
      <form method="post" action="/console/api-keys">
        <Csrf viewer={props.viewer} />
        <label for="role">Role</label>
        <select id="role" name="role">
          {API_KEY_ROLES.map(([role, text]) => (
            <option value={role} selected={v?.role === role}>
              {text}
            </option>
          ))}
        </select>
        <label for="k-campaign">Campaign (coordinators only)</label>
        <input type="text" id="k-campaign" name="campaignId" value={v?.campaignId ?? ""} />
        <label for="k-label">Label</label>
        <input type="text" id="k-label" name="label" maxlength={200} value={v?.label ?? ""} />
        <div class="actions">
          <button type="submit">Create key</button>
        </div>
      </form>
    </>
  );
}

const API_KEY_ROLES = [
  ["coordinator", "coordinator (one campaign)"],
  ["auditor", "auditor (reads the audit log)"],
  ["admin", "admin (everything)"],
] as const;

/** An admin's revocation form, filled in with `values` when it comes back refused. */
function RevocationForm(props: { viewer: Viewer; values?: Partial<Record<string, string>> }) {
  const v = props.values ?? {};
  return (
    <>
      <h2>Revoke</h2>
      <form method="post" action="/console/revocations">
        <Csrf viewer={props.viewer} />
        <label for="r-scope">What to revoke</label>
        <select id="r-scope" name="scope">
          {REVOCATION_SCOPES.map((s) => (
            <option value={s} selected={v.scope === s}>
              {SCOPE_LABEL[s]}
            </option>
          ))}
        </select>
        {REVOCATION_FIELDS.map((f) => (
          <>
            <label for={`r-${f}`}>{FIELD_LABEL[f]}</label>
            <input type="text" id={`r-${f}`} name={f} value={v[f] ?? ""} />
          </>
        ))}
        <label for="r-reason">Reason</label>
        <input type="text" id="r-reason" name="reason" required maxlength={500} value={v.reason ?? ""} />
        <div class="actions">
          <button type="submit" class="danger">
            Revoke
          </button>
        </div>
      </form>
    </>
  );
}

type IdHandler = (c: Context<ConsoleEnv>, id: string) => Response | Promise<Response>;

/** An admin's page about one key by its id: the role guard and the id check, then `handler`. */
const adminById =
  (param: string, title: string, notAnId: string, handler: IdHandler) => (c: Context<ConsoleEnv>) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const id = c.req.param(param) ?? "";
    if (!ID.test(id)) return errorPage(c, title, notAnId, 404);
    return handler(c, id);
  };

export function registerAdminPages(con: Hono<ConsoleEnv>): void {
  // API keys
  con.get("/api-keys", async (c) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const res = await c.var.api.call<Page<ApiKey>>("GET", "/v1/api-keys?limit=500");
    return page(
      c,
      "API keys",
      <>
        <ApiKeyForm viewer={c.var.viewer} />
        <h2>Keys</h2>
        <ListResult
          res={res}
          empty={<p>No API keys yet.</p>}
          error={
            <Notice kind="info">This token service does not list API keys yet; delete one by its id.</Notice>
          }
          render={(items) => (
            <DataTable
              label="API keys"
              rows={items}
              columns={[
                { label: "Id", cell: (k) => <code>{k.id}</code> },
                { label: "Role", cell: (k) => k.role },
                { label: "Campaign", cell: (k) => k.campaignId ?? "—" },
                { label: "Label", cell: (k) => k.label ?? "" },
                { label: "Created", cell: (k) => when(k.createdAt) },
                { label: "Last used", cell: (k) => when(k.lastUsedAt) },
                {
                  label: "Actions",
                  cell: (k) => (
                    <form method="get" action={`/console/api-keys/${encodeURIComponent(k.id)}/delete`}>
                      <button type="submit" class="danger small">
                        Delete
                      </button>
                    </form>
                  ),
                },
              ]}
            />
          )}
        />
        <IdForm
          action="/console/api-keys/by-id"
          inputId="del-id"
          label="Delete a key by id"
          button="Continue"
          secondary
        />
      </>,
      { status: !res.ok && res.status >= 500 ? 503 : 200 },
    );
  });

  con.get("/api-keys/by-id", (c) =>
    c.redirect(`/console/api-keys/${encodeURIComponent((c.req.query("id") ?? "").trim())}/delete`, 303),
  );

  con.post("/api-keys", async (c) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const role = field(c, "role");
    const campaignId = field(c, "campaignId");
    const label = field(c, "label");
    const res = await c.var.api.call<{ id: string; key: string; role: string; campaignId: string | null }>(
      "POST",
      "/v1/api-keys",
      {
        json: {
          role,
          ...(role === "coordinator" && campaignId ? { campaignId } : {}),
          ...(label ? { label } : {}),
        },
      },
    );
    if (!res.ok)
      // The form again, as it was filled in, under what the API refused.
      return formAgain(
        c,
        "API keys",
        "No key was created.",
        <ApiKeyForm viewer={c.var.viewer} values={{ role, campaignId, label }} />,
        res.problem,
        statusFor(res.status),
      );
    // Shown on the next page, once: a reload of that page or Back never posts the form again.
    c.var.session.newKey = res.body;
    return c.redirect("/console/api-keys/created", 303);
  });

  con.get("/api-keys/created", (c) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const k = c.var.session.newKey;
    c.var.session.newKey = undefined;
    if (!k)
      return page(
        c,
        "API key",
        <>
          <Notice kind="info">A new key is shown only once, right after it is created.</Notice>
          <p>
            <a href="/console/api-keys">Back to the API keys</a>
          </p>
        </>,
        { status: 410 },
      );
    // The one page that shows a credential: the new key, once, to the admin who made it.
    return page(
      c,
      "API key created",
      <>
        <Notice kind="warn">Copy this key now: it is shown only once and stored only as a hash.</Notice>
        <p>
          Key <code>{k.id}</code> ({k.role}
          {k.campaignId ? `, ${k.campaignId}` : ""}):
        </p>
        <p class="secret mono" id="new-key">
          {k.key}
        </p>
        <div class="actions">
          <button type="button" class="secondary copy" data-copy={k.key} hidden>
            Copy key
          </button>
          <a class="button secondary" href="/console/api-keys">
            Done
          </a>
        </div>
      </>,
    );
  });

  con.get(
    "/api-keys/:id/delete",
    adminById("id", "Delete an API key", "Not an API key id.", (c, id) => {
      return page(
        c,
        "Delete an API key",
        <form method="post" action={`/console/api-keys/${encodeURIComponent(id)}/delete`}>
          <Csrf viewer={c.var.viewer} />
          <p>
            Delete key <code>{id}</code>? It stops working at once, and anyone signed in to the console with
            it is signed out. Links it issued keep working (revoke them separately).
          </p>
          <ConfirmActions action="Delete" cancel="/console/api-keys" />
        </form>,
      );
    }),
  );

  con.post(
    "/api-keys/:id/delete",
    adminById("id", "Delete an API key", "Not an API key id.", async (c, id) => {
      const res = await c.var.api.call("DELETE", `/v1/api-keys/${id}`);
      if (!res.ok) return refusedPage(c, "Delete an API key", res);
      return done(c, "/console/api-keys", { kind: "ok", text: `Key ${id} deleted.` });
    }),
  );

  // Revocations
  con.get("/revocations", async (c) => {
    const { viewer } = c.var;
    if (viewer.role === "coordinator") return forbiddenPage(c);
    const res = await c.var.api.call<Page<Revocation>>("GET", "/v1/revocations?limit=200");
    return page(
      c,
      "Revocations",
      <>
        {viewer.role === "admin" ? <RevocationForm viewer={viewer} /> : null}
        <h2>Revocations so far</h2>
        <ListResult
          res={res}
          empty={<p>None.</p>}
          render={(items) => (
            <DataTable
              label="Revocations"
              rows={items}
              columns={[
                { label: "When", cell: (r) => when(r.effectiveAt ?? r.createdAt) },
                { label: "Scope", cell: (r) => r.scope },
                {
                  label: "What",
                  cell: (r) =>
                    REVOCATION_FIELDS.filter((f) => r[f])
                      .map((f) => `${f} ${r[f]}`)
                      .join(", ") || "everything",
                },
                { label: "Reason", cell: (r) => r.reason },
                { label: "By", cell: (r) => <code>{r.actor}</code> },
              ]}
            />
          )}
        />
      </>,
      { status: !res.ok && res.status >= 500 ? 503 : 200 },
    );
  });

  con.post("/revocations", async (c) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const scope = field(c, "scope");
    const reason = field(c, "reason");
    const given = Object.fromEntries(REVOCATION_FIELDS.map((f) => [f, field(c, f)])) as Record<
      RevocationField,
      string
    >;
    const values = { scope, reason, ...given };
    const again = (problem: Problem, status?: RefusalStatus) =>
      formAgain(
        c,
        "Revocations",
        "Nothing was revoked.",
        <RevocationForm viewer={c.var.viewer} values={values} />,
        problem,
        status,
      );
    if (!isScope(scope)) return again({ code: "validation", detail: "Choose what to revoke." });
    // Checked before the confirmation, which must name exactly what the API would then revoke.
    const rule = REVOCATION_RULES[scope];
    const missing = rule.required.find((f) => given[f] === "");
    if (missing)
      return again({
        code: "validation",
        detail: `${FIELD_LABEL[missing]} is needed to revoke ${SCOPE_LABEL[scope]}.`,
      });
    const used: readonly RevocationField[] = [...rule.required, ...rule.optional];
    const unused = REVOCATION_FIELDS.filter((f) => given[f] !== "" && !used.includes(f));
    if (unused.length > 0)
      return again({
        code: "validation",
        detail: `${unused.map((f) => FIELD_LABEL[f]).join(", ")} ${unused.length === 1 ? "is" : "are"} not used when revoking ${SCOPE_LABEL[scope]}: clear ${unused.length === 1 ? "it" : "them"}, or choose what to revoke again.`,
      });
    if (reason === "") return again({ code: "validation", detail: "Give a reason." });
    const body: Record<string, string> = { scope, reason };
    for (const f of used) if (given[f] !== "") body[f] = given[f];
    // Anything wider than one link is confirmed on a page that names what it ends (and works
    // without JavaScript); the form's own submit is only the first step.
    if (scope !== "link" && field(c, "confirm") !== "yes") return confirmRevocation(c, body);
    const res = await c.var.api.call<{ matched: number }>("POST", "/v1/revocations", { json: body });
    if (!res.ok) return again(res.problem, statusFor(res.status));
    const m = res.body.matched;
    return done(c, "/console/revocations", {
      kind: m === 0 ? "warn" : "ok",
      text:
        m === 0
          ? "Recorded, but it matched no link (check the ids)."
          : `Revoked: it covers ${m} link${m === 1 ? "" : "s"}.`,
    });
  });

  // Signing keys
  con.get("/signing-keys", async (c) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const res = await c.var.api.call<{ keys: { kid: string }[] }>("GET", "/.well-known/jwks.json");
    const keys = res.ok ? res.body.keys : [];
    return page(
      c,
      "Signing keys",
      <>
        <p>
          Keys published in the JWKS. The newest signs new links; older ones stay published until every link
          they signed has expired.
        </p>
        {/* No prompt: a rotation ends nothing (the old key stays published while its links live), and a
            script's confirm() is a click that silently does nothing where dialogs are dismissed. */}
        <form method="post" action="/console/signing-keys/rotate">
          <Csrf viewer={c.var.viewer} />
          <div class="actions">
            <button type="submit">Rotate signing key</button>
          </div>
        </form>
        {res.ok ? null : <ProblemNotice problem={res.problem} />}
        <DataTable
          label="Signing keys"
          rows={keys}
          columns={[
            { label: "Key id", cell: (k) => <code>{k.kid}</code> },
            {
              label: "Actions",
              cell: (k) => (
                <form method="get" action={`/console/signing-keys/${encodeURIComponent(k.kid)}/revoke`}>
                  <button type="submit" class="danger small">
                    Revoke key
                  </button>
                </form>
              ),
            },
          ]}
        />
      </>,
      { status: !res.ok && res.status >= 500 ? 503 : 200 },
    );
  });

  con.post("/signing-keys/rotate", async (c) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const res = await c.var.api.call<{ kid: string }>("POST", "/v1/keys/rotate");
    if (!res.ok) return refusedPage(c, "Signing keys", res);
    return done(c, "/console/signing-keys", { kind: "ok", text: `Key ${res.body.kid} signs from now on.` });
  });

  con.get(
    "/signing-keys/:kid/revoke",
    adminById("kid", "Revoke a signing key", "Not a key id.", (c, kid) => {
      return page(
        c,
        "Revoke a signing key",
        <form method="post" action={`/console/signing-keys/${encodeURIComponent(kid)}/revoke`}>
          <Csrf viewer={c.var.viewer} />
          <p>
            Revoke signing key <code>{kid}</code>? This is for a stolen key: it leaves the JWKS, and{" "}
            <strong>every link it signed, and every session opened from one, is refused</strong> on every
            gateway. Issue new links afterwards.
          </p>
          <label for="reason">Reason</label>
          <input
            type="text"
            id="reason"
            name="reason"
            required
            maxlength={500}
            value="revoked in the console"
          />
          <ConfirmActions action="Revoke key" cancel="/console/signing-keys" />
        </form>,
      );
    }),
  );

  con.post(
    "/signing-keys/:kid/revoke",
    adminById("kid", "Revoke a signing key", "Not a key id.", async (c, kid) => {
      const res = await c.var.api.call("POST", `/v1/keys/${kid}/revoke`, {
        json: { reason: field(c, "reason") },
      });
      if (!res.ok) return refusedPage(c, "Revoke a signing key", res, "The key was not revoked.");
      return done(c, "/console/signing-keys", { kind: "ok", text: `Key ${kid} revoked.` });
    }),
  );

  // Dead-link report
  con.get("/reports/dead-links", async (c) => {
    if (c.var.viewer.role !== "admin") return forbiddenPage(c);
    const since = (c.req.query("since") ?? "").trim();
    const q = new URLSearchParams();
    if (since) q.set("since", since.length === 10 ? `${since}T00:00:00Z` : since);
    const res = await c.var.api.call<{ since: string; items: DeadLinkRow[] }>(
      "GET",
      `/v1/reports/dead-links?${q}`,
    );
    // Coordinators by their key's label, where the key is still listed.
    const keys = await c.var.api.call<Page<ApiKey>>("GET", "/v1/api-keys?limit=500");
    const labelOf = new Map(keys.ok ? keys.body.items.map((k) => [k.id, k.label ?? ""]) : []);
    return page(
      c,
      "Dead-link report",
      <>
        <p>Attempts to use links that should no longer be in circulation, by issuing coordinator.</p>
        <form method="get" action="/console/reports/dead-links" class="filters">
          <div>
            <label for="since">Since (YYYY-MM-DD)</label>
            <input type="text" id="since" name="since" value={since} />
          </div>
          <div>
            <button type="submit">Show</button>
          </div>
        </form>
        <ListResult
          res={res}
          empty={<p>{`No attempts since ${when(res.ok ? res.body.since : null)}.`}</p>}
          render={(items) => (
            <DataTable
              label="Dead-link attempts"
              rows={items}
              columns={[
                {
                  label: "Issued by",
                  cell: (r) => (
                    <>
                      <code>{r.issuedBy ?? "—"}</code>
                      {r.issuedBy && labelOf.get(r.issuedBy) ? ` ${labelOf.get(r.issuedBy)}` : ""}
                    </>
                  ),
                },
                { label: "Campaign", cell: (r) => r.campaignId ?? "—" },
                { label: "Reason", cell: (r) => r.reason },
                { label: "Attempts", num: true, cell: (r) => r.attempts },
                { label: "Links", num: true, cell: (r) => r.links },
                { label: "Last", cell: (r) => when(r.lastAt) },
              ]}
            />
          )}
        />
      </>,
      { status: res.ok ? 200 : statusFor(res.status) },
    );
  });
}

/** What a wide revocation covers, in words, and whether an active link falls under it. */
function coverage(body: Record<string, string>): { what: Child; covers: (l: LinkItem) => boolean } {
  const { campaignId, contestId, phase, volunteerRef } = body;
  switch (body.scope) {
    case "volunteer":
      return {
        what: (
          <>
            every link of volunteer <strong>{volunteerRef ?? ""}</strong>
            {campaignId ? (
              <>
                {" "}
                in campaign <strong>{campaignId}</strong>
              </>
            ) : (
              " in every campaign"
            )}
          </>
        ),
        covers: (l) => l.volunteer.ref === volunteerRef && (!campaignId || l.campaignId === campaignId),
      };
    case "campaign":
      return {
        what: (
          <>
            every link of campaign <strong>{campaignId ?? ""}</strong>
          </>
        ),
        covers: (l) => l.campaignId === campaignId,
      };
    case "phase":
      return {
        what: (
          <>
            every link of phase <strong>{phase ?? ""}</strong> of contest <strong>{contestId ?? ""}</strong>
          </>
        ),
        covers: (l) => l.contestId === contestId && l.phase === phase,
      };
    case "contest":
      return {
        what: (
          <>
            every link of contest <strong>{contestId ?? ""}</strong>
          </>
        ),
        covers: (l) => l.contestId === contestId,
      };
    default:
      return { what: <strong>every link issued so far, in every campaign</strong>, covers: () => true };
  }
}

async function confirmRevocation(c: Context<ConsoleEnv>, body: Record<string, string>) {
  const { what, covers } = coverage(body);
  const links = await listAll<LinkItem>(c, "/v1/links?status=active");
  const active = links.ok ? links.items.filter(covers).length : null;
  return page(
    c,
    "Confirm the revocation",
    <form method="post" action="/console/revocations">
      <Csrf viewer={c.var.viewer} />
      {Object.entries(body).map(([k, v]) => (
        <input type="hidden" name={k} value={v} />
      ))}
      <input type="hidden" name="confirm" value="yes" />
      <p>
        You are about to revoke {what}.{" "}
        {active === null ? "Its active links" : `${active} active link${active === 1 ? "" : "s"}`} will stop
        working at once, with every session opened from them. This cannot be undone.
      </p>
      <ConfirmActions action="Revoke" cancel="/console/revocations" />
    </form>,
  );
}
