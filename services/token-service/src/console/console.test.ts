import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../app.ts";
import {
  ADMIN,
  callJson,
  createHarness,
  createKey,
  type Harness,
  seedContest,
  seedOpen,
} from "../test-support.ts";
import { CONSOLE_CSP } from "./index.tsx";

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, 60_000);
afterAll(() => h.close());

/** Every credential a test signed in with: no page may show one. */
const secrets = new Set<string>([ADMIN]);

interface Answer {
  status: number;
  html: string;
  res: Response;
}

/** A 303 to `to`: where a page sends the browser after a POST or a session's end. */
function expectRedirect(answer: Answer, to: string) {
  expect(answer.status).toBe(303);
  expect(answer.res.headers.get("location")).toBe(to);
}

/** A browser as the console sees one: keeps its cookie, sends forms from the console's origin. */
class Browser {
  cookie: string | undefined;
  csrf = "";

  readonly app: { request: (path: string, init: RequestInit) => Response | Promise<Response> } | undefined;

  /** `app`: another token service app than the suite's (say, one whose database is down) */
  constructor(app?: Browser["app"]) {
    this.app = app;
  }

  async request(
    path: string,
    init: Omit<RequestInit, "headers"> & { headers?: Record<string, string> } = {},
  ): Promise<Answer> {
    // A header given as "" is left out (a browser that does not send it).
    const headers = Object.fromEntries(Object.entries(init.headers ?? {}).filter(([, v]) => v !== ""));
    if (this.cookie) headers.cookie = `pl_console=${this.cookie}`;
    const res = await (this.app ?? h.app).request(path, { ...init, headers });
    const set = res.headers.get("set-cookie");
    if (set?.startsWith("pl_console=")) {
      const value = set.slice("pl_console=".length).split(";")[0]!;
      this.cookie = value === "" || /max-age=0/i.test(set) ? undefined : value;
    }
    const html = await res.text();
    const type = res.headers.get("content-type") ?? "";
    if (type.startsWith("text/html")) {
      // Every console page: the CSP, nosniff, no cache, and no credential anywhere.
      expect(res.headers.get("content-security-policy")).toBe(CONSOLE_CSP);
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(res.headers.get("referrer-policy")).toBe("no-referrer");
      // A whole page is a standards-mode document (a fragment for the live view is not).
      if (!path.includes("/fragment")) expect(html.startsWith("<!DOCTYPE html>")).toBe(true);
      if (path !== "/console/api-keys/created") for (const s of secrets) expect(html).not.toContain(s);
      const token = /name="csrf" value="([^"]+)"/.exec(html)?.[1];
      if (token) this.csrf = token;
    }
    return { status: res.status, html, res };
  }

  get(path: string) {
    return this.request(path);
  }

  /** A form POST from a console page; `csrf: null` leaves the token out. */
  post(
    path: string,
    fields: Record<string, string | string[]> = {},
    opts: { csrf?: string | null; headers?: Record<string, string> } = {},
  ) {
    const body = new URLSearchParams();
    const csrf = opts.csrf === undefined ? this.csrf : opts.csrf;
    if (csrf !== null) body.set("csrf", csrf);
    for (const [k, v] of Object.entries(fields)) for (const x of [v].flat()) body.append(k, x);
    return this.request(path, {
      method: "POST",
      body: body.toString(),
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        origin: "http://localhost",
        "sec-fetch-site": "same-origin",
        ...(opts.headers ?? {}),
      },
    });
  }

  /** An upload, and the page it redirects to when the links are issued (as a browser follows it). */
  async upload(
    path: string,
    fields: Record<string, string | string[]>,
    file: { name: string; text: string | Uint8Array<ArrayBuffer> },
  ) {
    const form = new FormData();
    form.set("csrf", this.csrf);
    for (const [k, v] of Object.entries(fields)) for (const x of [v].flat()) form.append(k, x);
    form.set("sheet", new File([file.text], file.name, { type: "text/csv" }));
    const posted = await this.request(path, {
      method: "POST",
      body: form,
      headers: { origin: "http://localhost", "sec-fetch-site": "same-origin" },
    });
    const to = posted.res.headers.get("location");
    if (posted.status !== 303 || !to?.startsWith("/console/links/issued/")) return posted;
    return this.get(to);
  }

  async signIn(key: string): Promise<Answer> {
    secrets.add(key);
    await this.get("/console/sign-in");
    return this.post("/console/sign-in", { apiKey: key }, { csrf: null });
  }
}

async function signedIn(key: string): Promise<Browser> {
  const b = new Browser();
  const res = await b.signIn(key);
  expect(res.status).toBe(303);
  expect(b.cookie).toBeDefined();
  return b;
}

describe("console sign-in", () => {
  it("shows a field labelled API key and a Sign in button, under the strict CSP", async () => {
    // GET /console itself is the sign-in page for a browser without a session.
    const front = await new Browser().get("/console");
    expect(front.status).toBe(200);
    expect(front.html).toMatch(/<label for="apiKey">API key<\/label>/);
    const { status, html } = await new Browser().get("/console/sign-in");
    expect(status).toBe(200);
    expect(html).toMatch(/<label for="apiKey">API key<\/label>/);
    expect(html).toMatch(/<input type="password" id="apiKey" name="apiKey"/);
    expect(html).toMatch(/<button type="submit">Sign in<\/button>/);
    // Its hint names both prefixes: an admin pasting a generated pla_ token is not told it is wrong.
    expect(html).toContain("<code>plk_</code>");
    expect(html).toContain("<code>pla_</code>");
    expect(html).not.toMatch(/<script>|<style>| style=| on[a-z]+=/);
  });

  it("signs in with the admin token into an HttpOnly, SameSite=Strict session cookie", async () => {
    const b = new Browser();
    await b.get("/console/sign-in");
    const res = await b.request("/console/sign-in", {
      method: "POST",
      body: new URLSearchParams({ apiKey: ADMIN }).toString(),
      headers: { "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "same-origin" },
    });
    expect(res.status).toBe(303);
    const cookie = res.res.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect(cookie).toMatch(/Path=\/console/);
    expect(cookie).not.toContain(ADMIN);
    expect(b.cookie).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const home = await b.get("/console");
    expectRedirect(home, "/console/contests");
    // `/console/` leads to the same front door.
    expectRedirect(await b.get("/console/"), "/console");
  });

  it("marks the session cookie Secure behind a TLS proxy, as HSTS is decided, and not over plain HTTP", async () => {
    for (const [proto, secure] of [
      ["https", true],
      [undefined, false],
    ] as const) {
      const b = new Browser();
      await b.get("/console/sign-in");
      const res = await b.request("/console/sign-in", {
        method: "POST",
        body: new URLSearchParams({ apiKey: ADMIN }).toString(),
        headers: {
          "content-type": "application/x-www-form-urlencoded",
          "sec-fetch-site": "same-origin",
          ...(proto ? { "x-forwarded-proto": proto } : {}),
        },
      });
      expect(res.status).toBe(303);
      expect(/;\s*Secure/i.test(res.res.headers.get("set-cookie") ?? ""), String(proto)).toBe(secure);
    }
  });

  it("refuses a wrong key without echoing it, and sets no session", async () => {
    const b = new Browser();
    const res = await b.post("/console/sign-in", { apiKey: "plk_not-a-real-key-at-all" }, { csrf: null });
    expect(res.status).toBe(401);
    expect(res.html).toContain("That API key is not valid.");
    expect(res.html).not.toContain("plk_not-a-real-key-at-all");
    expect(b.cookie).toBeUndefined();
    expect((await b.get("/console/links")).res.headers.get("location")).toBe("/console/sign-in");
  });

  it("refuses a sign-in posted from another site", async () => {
    const b = new Browser();
    const res = await b.post(
      "/console/sign-in",
      { apiKey: ADMIN },
      { csrf: null, headers: { "sec-fetch-site": "cross-site" } },
    );
    expect(res.status).toBe(403);
    expect(b.cookie).toBeUndefined();
  });

  it("reads at most 16 KiB from anyone not signed in", async () => {
    const b = new Browser();
    const res = await b.post(
      "/console/sign-in",
      { apiKey: ADMIN, pad: "x".repeat(64 * 1024) },
      { csrf: null },
    );
    expect(res.status).toBe(413);
    expect(b.cookie).toBeUndefined();
    // Signed in, an upload may still be megabytes.
    expect((await b.signIn(ADMIN)).status).toBe(303);
    const big = await b.post("/console/sign-out", { pad: "x".repeat(64 * 1024) }, { csrf: "wrong" });
    expect(big.status).toBe(403);
  });
});

const SHEET = "ref,name,email\nv-1,Ada,ada@example.org\nv-2,Grace,grace@example.org\n";

async function coordinator() {
  const { campaignId, contestId } = await seedOpen(h);
  const key = await createKey(h, "coordinator", campaignId);
  return { campaignId, contestId, key, b: await signedIn(key.key) };
}

const linksOf = async (campaignId: string) =>
  (
    await callJson<{ items: { id: string; status: string; volunteer: { ref: string } }[] }>(
      h,
      "GET",
      `/v1/links?campaignId=${campaignId}`,
    )
  ).body.items;

describe("CSRF and cross-site forms", () => {
  it("refuses a POST without the CSRF token, with a wrong one, or from another site", async () => {
    const { b, campaignId } = await coordinator();
    await b.get("/console/links/new");
    const fields = { scope: "volunteer", volunteerRef: "v-9", reason: "test" };
    expect((await b.post("/console/links/revoke", fields, { csrf: null })).status).toBe(403);
    expect((await b.post("/console/links/revoke", fields, { csrf: "x".repeat(43) })).status).toBe(403);
    expect(
      (await b.post("/console/links/revoke", fields, { headers: { "sec-fetch-site": "cross-site" } })).status,
    ).toBe(403);
    expect(
      (await b.post("/console/links/revoke", fields, { headers: { "sec-fetch-site": "same-site" } })).status,
    ).toBe(403);
    // A browser without Fetch Metadata: the Origin decides, and "null" is not ours.
    for (const origin of ["https://evil.example", "null"])
      expect(
        (await b.post("/console/links/revoke", fields, { headers: { origin, "sec-fetch-site": "" } })).status,
      ).toBe(403);
    // The token of another session is no good either.
    const other = await coordinator();
    expect((await b.post("/console/links/revoke", fields, { csrf: other.b.csrf })).status).toBe(403);
    // Nothing was revoked by any of them.
    const list = await callJson<{ items: unknown[] }>(h, "GET", "/v1/revocations");
    expect(JSON.stringify(list.body)).not.toContain(`"${campaignId}"`);
    // With it, the same form goes through.
    expect((await b.post("/console/links/revoke", fields)).status).toBe(303);
  });

  it("a request without the cookie (a cross-site form or link: SameSite=Strict holds it back) clears no cookie", async () => {
    const { b } = await coordinator();
    const cookie = b.cookie;
    // What another site's auto-submitting form or link reaches: no cookie sent with it.
    b.cookie = undefined;
    for (const answer of [
      await b.post("/console/sign-out", {}, { csrf: null, headers: { "sec-fetch-site": "cross-site" } }),
      await b.get("/console/links"),
    ])
      expect(answer.res.headers.get("set-cookie")).toBeNull();
    // The person's own session is still signed in.
    b.cookie = cookie;
    expect((await b.get("/console/links")).status).toBe(200);
  });

  it("a sibling origin's subresource or frame gets no page: the one-time key is not spent, the idle timer not restarted", async () => {
    // Another port or subdomain of the same site (the gateway, a party blog): SameSite=Strict
    // sends the cookie with its <img> or <iframe> of a console page.
    const sibling = (dest: string, mode = "no-cors") => ({
      headers: { "sec-fetch-site": "same-site", "sec-fetch-mode": mode, "sec-fetch-dest": dest },
    });
    const admin = await signedIn(ADMIN);
    await admin.get("/console/api-keys");
    expectRedirect(await admin.post("/console/api-keys", { role: "auditor" }), "/console/api-keys/created");
    for (const [dest, mode] of [
      ["image", "no-cors"],
      ["iframe", "navigate"],
    ] as const) {
      const res = await admin.request("/console/api-keys/created", sibling(dest, mode));
      expect(res.status, dest).toBe(403);
      expect(res.html).not.toContain("plk_");
      expect(res.res.headers.get("set-cookie")).toBeNull();
    }
    // The admin's own page still shows the key, once.
    const created = await admin.get("/console/api-keys/created");
    expect(created.status).toBe(200);
    expect(created.html).toMatch(/id="new-key">plk_/);
    // A sibling page fetching the console every few minutes does not keep an idle session alive.
    h.clock.advance(20 * 60_000);
    expect((await admin.request("/console/contests", sibling("image"))).status).toBe(403);
    h.clock.advance(11 * 60_000);
    expectRedirect(await admin.get("/console/contests"), "/console/sign-in?signed-out=expired");
    // A link from a sibling (a top-level navigation) opens the console as ever.
    const b = await signedIn(ADMIN);
    expect((await b.request("/console/contests", sibling("document", "navigate"))).status).toBe(200);
  });

  it("signs out: the old cookie no longer works", async () => {
    const { b } = await coordinator();
    await b.get("/console/links");
    const cookie = b.cookie;
    expect((await b.post("/console/sign-out")).status).toBe(303);
    expect(b.cookie).toBeUndefined();
    b.cookie = cookie;
    expect((await b.get("/console/links")).res.headers.get("location")).toMatch(/^\/console\/sign-in/);
  });

  it("ends a session after 30 idle minutes", async () => {
    const { b } = await coordinator();
    expect((await b.get("/console/links")).status).toBe(200);
    h.clock.advance(31 * 60_000);
    expectRedirect(await b.get("/console/links"), "/console/sign-in?signed-out=expired");
  });
});

describe("coordinator", () => {
  it("uploads a volunteers CSV, issues links, downloads them, and sees them in the table", async () => {
    const { b, campaignId } = await coordinator();
    const form = await b.get("/console/links/new");
    expect(form.status).toBe(200);
    expect(form.html).toMatch(/<label for="sheet">Volunteers CSV<\/label>/);
    expect(form.html).toMatch(/<input type="file" id="sheet" name="sheet"/);
    expect(form.html).toMatch(/<button type="submit">Issue links<\/button>/);
    // A select of the contest's phases where the API lists the campaign, else a text field.
    expect(form.html).toContain('<option value="open"');
    const res = await b.upload(
      "/console/links/issue",
      { phase: "open", scopes: ["calls:read", "calls:write"], ttlDays: "7", maxUses: "5" },
      { name: "volunteers.csv", text: SHEET },
    );
    expect(res.status).toBe(200);
    expect(res.html).toContain("2 links issued");
    const download = /href="(\/console\/links\/download\/[^"]+)"[^>]*>Download links \(CSV\)</.exec(
      res.html,
    )?.[1];
    expect(download).toBeDefined();
    expect(res.html).toContain("Copy link");
    const file = await b.get(download!);
    expect(file.res.headers.get("content-type")).toMatch(/^text\/csv/);
    expect(file.res.headers.get("content-disposition")).toMatch(/^attachment/);
    expect(file.html).toMatch(/^ref,name/);
    expect(file.html).toContain("http://127.0.0.1:8080/l/");
    expect(file.html).toContain("v-1");
    const table = await b.get("/console/links");
    expect(table.status).toBe(200);
    for (const h of ["Ref", "Name", "Status", "Uses", "Last seen", "Devices", "Active sessions"])
      expect(table.html).toContain(
        `<th scope="col"${h === "Uses" || h === "Devices" || h === "Active sessions" ? ' class="num"' : ""}>${h}</th>`,
      );
    expect(table.html.match(/>Revoke<\/button>/g)?.length).toBe(2);
    expect(table.html).toMatch(
      /href="\/console\/volunteers\/revoke\?ref=v-1&amp;campaignId=[^"]+">Revoke volunteer<\/a>/,
    );
    expect(await linksOf(campaignId)).toHaveLength(2);
    // A search by volunteer narrows the table.
    const one = await b.get("/console/links?volunteer=v-2");
    expect(one.html).toContain("v-2");
    expect(one.html).not.toContain("<code>v-1</code>");
  });

  it("shows issued links on a page the upload redirects to, so a reload shows them again and re-posts nothing", async () => {
    const { b, campaignId, key } = await coordinator();
    await b.get("/console/links/new");
    const form = new FormData();
    form.set("csrf", b.csrf);
    form.set("phase", "open");
    form.set("scopes", "calls:read");
    form.set("sheet", new File([SHEET], "v.csv", { type: "text/csv" }));
    const posted = await b.request("/console/links/issue", {
      method: "POST",
      body: form,
      headers: { origin: "http://localhost", "sec-fetch-site": "same-origin" },
    });
    expect(posted.status).toBe(303);
    const to = posted.res.headers.get("location")!;
    expect(to).toMatch(/^\/console\/links\/issued\/[A-Za-z0-9_-]+$/);
    // A reload (or a phone reopening a discarded tab) asks for the page again: the same links.
    const first = await b.get(to);
    const again = await b.get(to);
    expect(again.status).toBe(200);
    expect(again.html).toContain("2 links issued");
    const urls = (html: string) => [...html.matchAll(/data-copy="([^"]+)"/g)].map((m) => m[1]);
    expect(urls(again.html)).toHaveLength(2);
    expect(urls(again.html)).toEqual(urls(first.html));
    expect(await linksOf(campaignId)).toHaveLength(2);
    // Another session, even of the same key, cannot open it.
    const other = await signedIn(key.key);
    expect((await other.get(to)).status).toBe(404);
  });

  it("searches the links table by part of a volunteer's ref or name, in any case, within its campaign", async () => {
    const { b } = await coordinator();
    await b.get("/console/links/new");
    const sheet = "ref,name\nvol-ada,Ada Lovelace\nvol-grace,Grace Hopper\nx-3,Alan Turing\n";
    const fields = { phase: "open", scopes: "calls:read" };
    expect((await b.upload("/console/links/issue", fields, { name: "v.csv", text: sheet })).status).toBe(200);
    // A rival campaign's volunteer of the same name is never found.
    const rival = await coordinator();
    await rival.b.get("/console/links/new");
    await rival.b.upload("/console/links/issue", fields, {
      name: "v.csv",
      text: "ref,name\nr-1,Ada Rival\n",
    });
    const form = await b.get("/console/links");
    expect(form.html).toMatch(/<label for="f-search">Search by volunteer ref or name<\/label>/);
    expect(form.html).toMatch(/<input type="search" id="f-search" name="q"/);
    const refsFor = async (q: string) =>
      [
        ...(await b.get(`/console/links?${new URLSearchParams({ q })}`)).html.matchAll(
          /<td data-label="Ref"><code>([^<]+)</g,
        ),
      ]
        .map((m) => m[1])
        .sort();
    expect(await refsFor("ada")).toEqual(["vol-ada"]);
    expect(await refsFor("HOPPER")).toEqual(["vol-grace"]);
    expect(await refsFor("vol-")).toEqual(["vol-ada", "vol-grace"]);
    expect(await refsFor("Turing")).toEqual(["x-3"]);
    expect(await refsFor("Rival")).toEqual([]);
  });

  it("re-uploading the same sheet skips volunteers holding a link, unless Reissue is ticked", async () => {
    const { b, campaignId } = await coordinator();
    await b.get("/console/links/new");
    const fields = { phase: "open", scopes: "calls:read" };
    await b.upload("/console/links/issue", fields, { name: "v.csv", text: SHEET });
    const again = await b.upload("/console/links/issue", fields, { name: "v.csv", text: SHEET });
    expect(again.status).toBe(200);
    expect(again.html).toContain("0 links issued");
    expect(again.html).toContain("2 volunteers already held an active link and were skipped");
    expect(await linksOf(campaignId)).toHaveLength(2);
    const reissued = await b.upload(
      "/console/links/issue",
      { ...fields, reissue: "true" },
      { name: "v.csv", text: SHEET },
    );
    expect(reissued.html).toContain("2 links issued");
    expect(reissued.html).toContain("2 of them replace a link that is now revoked.");
    const statuses = (await linksOf(campaignId)).map((l) => l.status).sort();
    expect(statuses).toEqual(["active", "active", "revoked", "revoked"]);
  });

  it("names the rows of a bad sheet and issues nothing", async () => {
    const { b, campaignId } = await coordinator();
    await b.get("/console/links/new");
    const res = await b.upload(
      "/console/links/issue",
      { phase: "open", scopes: "calls:read" },
      { name: "bad.csv", text: "ref,name\nv-1,Ada\n,Nobody\nv-1,Twice\n" },
    );
    expect(res.status).toBe(400);
    expect(res.html).toContain("Nothing was issued.");
    expect(res.html).toMatch(/Row 3: /);
    expect(res.html).toMatch(
      /Row 4: ref &quot;v-1&quot; is already on row 2|Row 4: ref "v-1" is already on row 2/,
    );
    expect(await linksOf(campaignId)).toHaveLength(0);
  });

  it("refuses a sheet that is not UTF-8 (a spreadsheet's Windows-1252 CSV), as the API does, rather than issue garbled names", async () => {
    const { b, campaignId } = await coordinator();
    await b.get("/console/links/new");
    // "Renée" as Windows-1252 writes it: é is the single byte 0xE9, never valid UTF-8 here.
    const cp1252 = new Uint8Array([
      ...new TextEncoder().encode("ref,name\nv-1,Ren"),
      0xe9,
      ...new TextEncoder().encode("e\n"),
    ]);
    const res = await b.upload(
      "/console/links/issue",
      { phase: "open", scopes: "calls:read" },
      { name: "excel.csv", text: cp1252 },
    );
    expect(res.status).toBe(400);
    expect(res.html).toContain("Nothing was issued.");
    expect(res.html).toContain("save the sheet as CSV UTF-8");
    expect(await linksOf(campaignId)).toHaveLength(0);
  });

  it("names what the API refused in plain words, without pointing people to its `errors` member", async () => {
    const admin = await signedIn(ADMIN);
    const res = await admin.get("/console/audit?since=garbage");
    expect(res.status).toBe(400);
    expect(res.html).toContain("Some of what you entered is not valid.");
    expect(res.html).toContain("<li>since: ");
    expect(res.html).not.toContain("see `errors`");
    expect(res.html).not.toContain("# ›");
  });

  it("refuses an unknown filter value (400), as the API does, rather than showing everything unfiltered", async () => {
    const admin = await signedIn(ADMIN);
    for (const path of ["/console/audit?decision=bogus", "/console/links?status=bogus"]) {
      const res = await admin.get(path);
      expect(res.status, path).toBe(400);
      expect(res.html, path).toContain("Some of what you entered is not valid.");
    }
  });

  it("shows an API refusal in plain words (a phase that does not exist)", async () => {
    const { b } = await coordinator();
    await b.get("/console/links/new");
    const res = await b.upload(
      "/console/links/issue",
      { phase: "nope", scopes: "calls:read" },
      { name: "v.csv", text: SHEET },
    );
    expect(res.status).toBe(404);
    expect(res.html).toContain("Nothing was issued.");
  });

  it("revokes one link after a confirmation naming it, then a volunteer", async () => {
    const { b, campaignId } = await coordinator();
    await b.get("/console/links/new");
    await b.upload(
      "/console/links/issue",
      { phase: "open", scopes: "calls:read" },
      { name: "v.csv", text: SHEET },
    );
    const all = await linksOf(campaignId);
    const l1 = all.find((l) => l.volunteer.ref === "v-1");
    const l2 = all.find((l) => l.volunteer.ref === "v-2");
    const confirm = await b.get(`/console/links/${l1!.id}/revoke`);
    expect(confirm.status).toBe(200);
    expect(confirm.html).toContain("Ada (v-1)");
    expect(confirm.html).toContain(`campaign ${campaignId}`);
    const done = await b.post("/console/links/revoke", {
      scope: "link",
      linkId: l1!.id,
      reason: "lost phone",
    });
    expect(done.status).toBe(303);
    const after = await b.get(done.res.headers.get("location")!);
    expect(after.html).toContain("Revoked: 1 link stopped working.");
    const vol = await b.get(`/console/volunteers/revoke?ref=v-2&campaignId=${campaignId}`);
    expect(vol.html).toContain("every link of volunteer v-2");
    expect(vol.html).toContain("1 active link");
    await b.post("/console/links/revoke", { scope: "volunteer", volunteerRef: "v-2", reason: "left" });
    const statuses = Object.fromEntries((await linksOf(campaignId)).map((l) => [l.id, l.status]));
    expect(statuses).toEqual({ [l1!.id]: "revoked", [l2!.id]: "revoked" });
  });

  it("cannot see or revoke another campaign's links", async () => {
    const mine = await coordinator();
    const theirs = await coordinator();
    await theirs.b.get("/console/links/new");
    await theirs.b.upload(
      "/console/links/issue",
      { phase: "open", scopes: "calls:read" },
      { name: "v.csv", text: SHEET },
    );
    const [link] = await linksOf(theirs.campaignId);
    expect((await mine.b.get(`/console/links/${link!.id}/revoke`)).status).toBe(404);
    const res = await mine.b.post("/console/links/revoke", { scope: "link", linkId: link!.id, reason: "x" });
    expect(res.status).toBeGreaterThanOrEqual(400);
    // A campaignId smuggled into the form is ignored: a coordinator acts on its own campaign only.
    await mine.b.post("/console/links/revoke", {
      scope: "volunteer",
      volunteerRef: "v-1",
      campaignId: theirs.campaignId,
      reason: "x",
    });
    expect((await linksOf(theirs.campaignId)).map((l) => l.status)).toEqual(["active", "active"]);
    const table = await mine.b.get(`/console/links?campaignId=${theirs.campaignId}`);
    expect(table.html).not.toContain(link!.id);
  });

  it("sees only its own navigation and gets 403 on admin and auditor pages and actions", async () => {
    const { b } = await coordinator();
    const home = await b.get("/console/links");
    expect(home.html).toContain('href="/console/progress"');
    for (const hidden of [
      "/console/contests",
      "/console/api-keys",
      "/console/audit",
      "/console/signing-keys",
    ])
      expect(home.html).not.toContain(`href="${hidden}"`);
    for (const path of [
      "/console/contests",
      "/console/campaigns",
      "/console/api-keys",
      "/console/revocations",
      "/console/signing-keys",
      "/console/audit",
      "/console/audit/verify",
      "/console/audit/export",
      "/console/reports/dead-links",
    ])
      expect((await b.get(path)).status, path).toBe(403);
    for (const [path, fields] of [
      ["/console/api-keys", { role: "admin" }],
      ["/console/signing-keys/rotate", {}],
      ["/console/revocations", { scope: "all", reason: "x" }],
    ] as const)
      expect((await b.post(path, fields)).status, path).toBe(403);
    expect((await callJson<{ keys: unknown[] }>(h, "GET", "/.well-known/jwks.json")).body.keys).toHaveLength(
      1,
    );
  });

  it("lets the plain upload issue for the current phase, and the confirming click alone do it", async () => {
    const { contestId, campaignId } = await seedContest(h);
    const key = await createKey(h, "coordinator", campaignId);
    const b = await signedIn(key.key);
    const form = await b.get("/console/links/new");
    // The ended phase is not offered; the current one comes first, so the browser picks it.
    const options = [...form.html.matchAll(/<option value="([^"]+)"/g)].map((m) => m[1]);
    expect(options).toEqual(["nominations", "ballot"]);
    expect(form.html).toContain('<link rel="icon" href="data:,"/>');
    const admin = await signedIn(ADMIN);
    for (const path of [
      `/console/contests/${contestId}/phases/nominations/end`,
      `/console/signing-keys/${(await callJson<{ keys: { kid: string }[] }>(h, "GET", "/.well-known/jwks.json")).body.keys[0]!.kid}/revoke`,
    ]) {
      const page = await admin.get(path);
      expect(page.html, path).toMatch(
        /<input type="text" id="reason" name="reason" required="" maxlength="500" value="[^"]+"/,
      );
    }
  });

  it("shows progress by volunteer, and a fragment that refreshes it", async () => {
    const { b } = await coordinator();
    await b.get("/console/links/new");
    await b.upload(
      "/console/links/issue",
      { phase: "open", scopes: "calls:read" },
      { name: "v.csv", text: SHEET },
    );
    const res = await b.get("/console/progress");
    expect(res.status).toBe(200);
    expect(res.html).toContain("links opened");
    expect(res.html).toContain("volunteers opened their link");
    expect(res.html).toContain("active sessions");
    expect(res.html).toContain("calls made");
    expect(res.html).toMatch(/data-refresh="\/console\/progress\/fragment/);
    const fragment = await b.get("/console/progress/fragment");
    expect(fragment.status).toBe(200);
    expect(fragment.html).toContain("v-2");
    expect(fragment.html).not.toContain("<html");
  });

  it("a progress view left open refreshing does not keep the session from idling out", async () => {
    const { b } = await coordinator();
    expect((await b.get("/console/progress")).status).toBe(200);
    for (let i = 0; i < 5; i++) {
      h.clock.advance(5 * 60_000);
      expect((await b.get("/console/progress/fragment")).status).toBe(200);
    }
    h.clock.advance(5 * 60_000);
    expectRedirect(await b.get("/console/progress/fragment"), "/console/sign-in?signed-out=expired");
  });
});

describe("admin", () => {
  it("draws a contest's timeline and switches a phase off after a confirmation naming it", async () => {
    const { contestId, campaignId } = await seedContest(h);
    const admin = await signedIn(ADMIN);
    const page = await admin.get(`/console/contests/${contestId}`);
    expect(page.status).toBe(200);
    expect(page.html).toContain("<svg");
    expect(page.html).toContain(">now</text>");
    expect(page.html).toContain(">Switch phase off</button>");
    await callJson(h, "POST", "/v1/links", {
      body: { campaignId, phase: "ballot", volunteer: { ref: "v-1" }, scopes: ["calls:read"] },
    });
    const confirm = await admin.get(`/console/contests/${contestId}/phases/ballot/end`);
    expect(confirm.html).toContain("phase <strong>ballot</strong>");
    expect(confirm.html).toContain("Leadership 2020");
    expect(confirm.html).toContain("1 active link of this phase");
    const res = await admin.post(`/console/contests/${contestId}/phases/nominations/end`, {
      reason: "drill",
    });
    expect(res.status).toBe(303);
    const contest = await callJson<{ currentPhase: unknown }>(h, "GET", `/v1/contests/${contestId}`);
    expect(contest.body.currentPhase).toBeNull();
  });

  it("creates an API key (shown once), and deleting it signs its console sessions out", async () => {
    const admin = await signedIn(ADMIN);
    await admin.get("/console/api-keys");
    const posted = await admin.post("/console/api-keys", { role: "auditor", label: "board" });
    // Post/redirect/get: a reload or Back never creates a second key or shows this one again.
    expectRedirect(posted, "/console/api-keys/created");
    const created = await admin.get("/console/api-keys/created");
    expect(created.status).toBe(200);
    const key = /<p class="secret mono" id="new-key">([^<]+)<\/p>/.exec(created.html)?.[1];
    expect(key).toMatch(/^plk_/);
    const id = /Key <code>([^<]+)<\/code>/.exec(created.html)?.[1];
    const auditor = await signedIn(key!);
    expect((await auditor.get("/console/audit")).status).toBe(200);
    // Never shown again.
    expect((await admin.get("/console/api-keys")).html).not.toContain(key!);
    const again = await admin.get("/console/api-keys/created");
    expect(again.status).toBe(410);
    expect(again.html).not.toContain(key!);
    const confirm = await admin.get(`/console/api-keys/${id}/delete`);
    expect(confirm.html).toContain(`Delete key <code>${id}</code>?`);
    expect((await admin.post(`/console/api-keys/${id}/delete`)).status).toBe(303);
    expect((await auditor.get("/console/audit")).status).toBe(303);
  });

  it("a key the API refuses to create comes back as its form, filled in as it was", async () => {
    const admin = await signedIn(ADMIN);
    await admin.get("/console/api-keys");
    const unbound = await admin.post("/console/api-keys", { role: "coordinator", label: "door knockers" });
    expect(unbound.status).toBe(400);
    expect(unbound.html).toContain("No key was created.");
    expect(unbound.html).toMatch(/<option value="coordinator" selected="">/);
    expect(unbound.html).toMatch(/name="label"[^>]* value="door knockers"/);
    expect(unbound.html).toContain("Create key");
    const unknown = await admin.post("/console/api-keys", {
      role: "coordinator",
      campaignId: "no-such-campaign",
      label: "door knockers",
    });
    expect(unknown.status).toBe(404);
    expect(unknown.html).toMatch(/name="campaignId"[^>]* value="no-such-campaign"/);
    expect(unknown.html).toMatch(/name="label"[^>]* value="door knockers"/);
  });

  it("a campaign the API refuses to save comes back as its form, filled in as it was", async () => {
    const admin = await signedIn(ADMIN);
    await admin.get("/console/campaigns");
    const fields = {
      id: "field-team-1",
      name: "Field team",
      contestId: "no-such-contest",
      contact: "Jo Bloggs, jo@example.org",
    };
    const refused = await admin.post("/console/campaigns", fields);
    expect(refused.status).toBe(404);
    expect(refused.html).toContain("The campaign was not saved.");
    expect(refused.html).toContain("Save campaign");
    for (const [name, value] of Object.entries(fields))
      expect(refused.html).toMatch(new RegExp(`name="${name}"[^>]* value="${value}"`));
    // The console's own check of the id keeps the form too.
    const badId = await admin.post("/console/campaigns", { ...fields, id: "-nope" });
    expect(badId.status).toBe(400);
    expect(badId.html).toMatch(/name="name"[^>]* value="Field team"/);
  });

  it("grants and withdraws an entitlement from the matrix", async () => {
    const { campaignId } = await seedContest(h, { entitled: ["calls:read"] });
    const admin = await signedIn(ADMIN);
    const page = await admin.get(`/console/campaigns/${campaignId}`);
    expect(page.status).toBe(200);
    expect(page.html).toContain('aria-label="members:read in ballot"');
    await admin.post(`/console/campaigns/${campaignId}/entitlements`, {
      phase: "ballot",
      scopes: ["calls:read", "members:read"],
      action: "grant",
    });
    const granted = await callJson<{ entitlements: Record<string, string[]> }>(
      h,
      "GET",
      `/v1/campaigns/${campaignId}`,
    );
    if (granted.status === 200)
      expect(granted.body.entitlements.ballot).toEqual(["calls:read", "members:read"]);
    await admin.post(`/console/campaigns/${campaignId}/entitlements`, {
      phase: "ballot",
      action: "withdraw",
    });
  });

  it("rotates and revokes signing keys, and records a revocation with what it matched", async () => {
    const admin = await signedIn(ADMIN);
    await admin.get("/console/signing-keys");
    expect((await admin.post("/console/signing-keys/rotate")).status).toBe(303);
    const page = await admin.get("/console/signing-keys");
    const kids = [...page.html.matchAll(/<code>([^<]+)<\/code>/g)].map((m) => m[1]!);
    expect(kids.length).toBeGreaterThanOrEqual(2);
    const old = kids.at(-1)!;
    const confirm = await admin.get(`/console/signing-keys/${old}/revoke`);
    expect(confirm.html).toContain("every link it signed");
    const revoked = await admin.post(`/console/signing-keys/${old}/revoke`, { reason: "drill" });
    expect(revoked.status).toBe(303);
    await admin.get("/console/revocations");
    const rev = await admin.post("/console/revocations", {
      scope: "volunteer",
      volunteerRef: "nobody-xyz",
      reason: "typo?",
      confirm: "yes",
    });
    expect(rev.status).toBe(303);
    expect((await admin.get("/console/revocations")).html).toContain("matched no link");
  });

  it("shows the links of a revoked signing key as revoked to their coordinator, and reissues them on a plain re-upload", async () => {
    const { b } = await coordinator();
    await b.get("/console/links/new");
    const fields = { phase: "open", scopes: "calls:read" };
    await b.upload("/console/links/issue", fields, { name: "v.csv", text: SHEET });
    const admin = await signedIn(ADMIN);
    const kid = h.keys.signer().kid;
    await admin.get(`/console/signing-keys/${kid}/revoke`);
    expect((await admin.post(`/console/signing-keys/${kid}/revoke`, { reason: "drill" })).status).toBe(303);

    const table = await b.get("/console/links");
    expect(table.html.match(/class="status status-revoked"/g)?.length).toBe(2);
    expect(table.html).not.toContain("status-active");
    expect(table.html).not.toMatch(/>Revoke<\/button>/);
    const active = await b.get("/console/links?status=active");
    expect(active.html).toContain("No links match.");
    expect(active.html).not.toContain("<code>v-1</code>");
    expect((await b.get("/console/links?status=revoked")).html).toContain("<code>v-1</code>");
    // Nobody holds a working link any more: the same sheet issues anew, without Reissue.
    const again = await b.upload("/console/links/issue", fields, { name: "v.csv", text: SHEET });
    expect(again.status).toBe(200);
    expect(again.html).toContain("2 links issued");
    expect(
      (await b.get("/console/links?status=active")).html.match(/class="status status-active"/g)?.length,
    ).toBe(2);
  });

  it("issues links for a campaign it picks first", async () => {
    const { campaignId } = await seedOpen(h);
    const admin = await signedIn(ADMIN);
    const pick = await admin.get("/console/links/new");
    expect(pick.html).toContain(`<option value="${campaignId}">`);
    const form = await admin.get(`/console/links/new?campaignId=${campaignId}`);
    expect(form.html).toContain('<option value="open"');
    const res = await admin.upload(
      "/console/links/issue",
      { campaignId, phase: "open", scopes: "calls:read" },
      { name: "v.csv", text: SHEET },
    );
    expect(res.status).toBe(200);
    expect(await linksOf(campaignId)).toHaveLength(2);
  });

  it("picks the campaign whose progress it sees from a list, as for an upload", async () => {
    const { campaignId } = await seedOpen(h);
    const admin = await signedIn(ADMIN);
    const first = await admin.get("/console/progress");
    expect(first.html).toMatch(/<select id="p-campaign" name="campaignId" required="">/);
    expect(first.html).toContain(`<option value="${campaignId}">`);
    const chosen = await admin.get(`/console/progress?campaignId=${campaignId}`);
    expect(chosen.html).toContain(`<option value="${campaignId}" selected="">`);
  });

  it("opens every admin page", async () => {
    const admin = await signedIn(ADMIN);
    for (const path of [
      "/console/links",
      "/console/links/new",
      "/console/progress",
      "/console/contests",
      "/console/campaigns",
      "/console/api-keys",
      "/console/revocations",
      "/console/signing-keys",
      "/console/audit",
      "/console/reports/dead-links",
    ])
      expect((await admin.get(path)).status, path).toBe(200);
  });
});

describe("auditor", () => {
  it("reads the audit log, verifies it and downloads the export, and nothing else", async () => {
    const key = await createKey(h, "auditor");
    const b = await signedIn(key.key);
    const log = await b.get("/console/audit");
    expect(log.status).toBe(200);
    expect(log.html).toContain('<button type="submit">Verify</button>');
    expect(log.html).toContain("api_key.created");
    const filtered = await b.get("/console/audit?decision=deny");
    expect(filtered.html).not.toContain("api_key.created");
    const verify = await b.get("/console/audit/verify");
    expect(verify.html).toContain("<strong>ok</strong>");
    const file = await b.get("/console/audit/export");
    expect(file.res.headers.get("content-type")).toMatch(/^application\/x-ndjson/);
    const lines = file.html
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]!.type).toBe("phaselock.audit.export");
    expect(lines.length).toBeGreaterThan(2);
    expect((await b.get("/console/revocations")).html).not.toContain(
      '<form method="post" action="/console/revocations"',
    );
    for (const path of ["/console/links", "/console/contests", "/console/api-keys", "/console/progress"])
      expect((await b.get(path)).status, path).toBe(403);
    expect((await b.post("/console/revocations", { scope: "all", reason: "x" })).status).toBe(403);
    expect(
      (await b.post("/console/links/revoke", { scope: "volunteer", volunteerRef: "v", reason: "x" })).status,
    ).toBe(403);
  });
});

describe("GET /v1/audit/export", () => {
  it("streams the chain as NDJSON for admins and auditors only", async () => {
    const res = await h.app.request("/v1/audit/export", { headers: { authorization: `Bearer ${ADMIN}` } });
    expect(res.status).toBe(200);
    const lines = (await res.text()).trim().split("\n");
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({ type: "phaselock.audit.export.end" });
    const { campaignId } = await seedOpen(h);
    const coord = await createKey(h, "coordinator", campaignId);
    expect(
      (await h.app.request("/v1/audit/export", { headers: { authorization: `Bearer ${coord.key}` } })).status,
    ).toBe(403);
    expect(
      (await h.app.request("/v1/audit/export?typo=1", { headers: { authorization: `Bearer ${ADMIN}` } }))
        .status,
    ).toBe(400);
  });
});

describe("console sources", () => {
  it("every page file names its JSX runtime, so tsx (pnpm start) renders it as vitest and tsc do", () => {
    const dir = dirname(fileURLToPath(import.meta.url));
    const files = readdirSync(dir).filter((f) => f.endsWith(".tsx"));
    expect(files.length).toBeGreaterThan(5);
    for (const f of files)
      expect(
        readFileSync(join(dir, f), "utf8").startsWith(
          "/** @jsxRuntime automatic */\n/** @jsxImportSource hono/jsx */\n",
        ),
        f,
      ).toBe(true);
  });
});

describe("ids the API accepts", () => {
  it("switches off a phase and grants an entitlement whose ids have capitals, dots and underscores", async () => {
    const contestId = `GE.2019_${Date.now()}`;
    const campaignId = `Labour.GE_${Date.now()}`;
    const day = 86_400_000;
    const t0 = new Date("2020-03-01T12:00:00.000Z").getTime();
    const iso = (ms: number) => new Date(t0 + ms).toISOString();
    expect(
      (
        await callJson(h, "PUT", `/v1/contests/${contestId}`, {
          body: {
            name: "General election",
            phases: [{ name: "Final_Ballot", startsAt: iso(-day), endsAt: iso(10 * day), memberData: true }],
          },
        })
      ).status,
    ).toBeLessThan(300);
    expect(
      (await callJson(h, "PUT", `/v1/campaigns/${campaignId}`, { body: { name: "Labour", contestId } }))
        .status,
    ).toBeLessThan(300);
    const admin = await signedIn(ADMIN);
    const matrix = await admin.get(`/console/campaigns/${campaignId}`);
    expect(matrix.html).toContain('aria-label="calls:read in Final_Ballot"');
    const granted = await admin.post(`/console/campaigns/${campaignId}/entitlements`, {
      phase: "Final_Ballot",
      scopes: ["calls:read"],
      action: "grant",
    });
    expect(granted.status).toBe(303);
    const campaign = await callJson<{ entitlements: Record<string, string[]> }>(
      h,
      "GET",
      `/v1/campaigns/${campaignId}`,
    );
    expect(campaign.body.entitlements.Final_Ballot).toEqual(["calls:read"]);
    const upload = await admin.get(`/console/links/new?campaignId=${campaignId}`);
    expect(upload.html).toContain('<option value="Final_Ballot"');
    const confirm = await admin.get(`/console/contests/${contestId}/phases/Final_Ballot/end`);
    expect(confirm.status).toBe(200);
    const res = await admin.post(`/console/contests/${contestId}/phases/Final_Ballot/end`, {
      reason: "drill",
    });
    expect(res.status).toBe(303);
    const contest = await callJson<{ currentPhase: unknown }>(h, "GET", `/v1/contests/${contestId}`);
    expect(contest.body.currentPhase).toBeNull();
  });
});

describe("admin campaign form", () => {
  it("updating a campaign keeps its contact and rate limits; creating one sets its contact", async () => {
    const { contestId, campaignId } = await seedContest(h);
    const put = await callJson(h, "PUT", `/v1/campaigns/${campaignId}`, {
      body: {
        name: "Campaign",
        contestId,
        limits: { requestsPerMinute: 7 },
        contact: "Jo Bloggs, jo@example.org",
      },
    });
    expect(put.status).toBeLessThan(300);
    const admin = await signedIn(ADMIN);
    const list = await admin.get("/console/campaigns");
    expect(list.html).toContain('name="contact"');
    /** The campaign form, posted as the admin would fill it in. */
    const save = (id: string, name: string, contact: string) =>
      admin.post("/console/campaigns", { id, name, contestId, contact });
    expect((await save(campaignId, "Renamed", "")).status).toBe(303);
    const after = await callJson<{ name: string; contact?: string; limits: Record<string, number> }>(
      h,
      "GET",
      `/v1/campaigns/${campaignId}`,
    );
    expect(after.body.name).toBe("Renamed");
    expect(after.body.contact).toBe("Jo Bloggs, jo@example.org");
    expect(after.body.limits).toEqual({ requestsPerMinute: 7 });
    const shown = await admin.get(`/console/campaigns/${campaignId}`);
    expect(shown.html).toContain("<strong>Jo Bloggs, jo@example.org</strong>");
    const fresh = `${campaignId}-new`;
    expect((await save(fresh, "New", "Sam <sam@example.org>")).status).toBe(303);
    const made = await callJson<{ contact?: string }>(h, "GET", `/v1/campaigns/${fresh}`);
    expect(made.body.contact).toBe("Sam <sam@example.org>");
    // Shown as text, never as markup.
    const page = await admin.get(`/console/campaigns/${fresh}`);
    expect(page.html).toContain("Sam &lt;sam@example.org&gt;");
  });
});

describe("admin revocations form", () => {
  it("asks for a confirmation naming what a campaign, phase, contest or all-links revocation ends", async () => {
    const { contestId, campaignId } = await seedOpen(h);
    await callJson(h, "POST", "/v1/links", {
      body: { campaignId, phase: "open", volunteer: { ref: "v-1" }, scopes: ["calls:read"] },
    });
    const admin = await signedIn(ADMIN);
    await admin.get("/console/revocations");
    const count = async () =>
      (await callJson<{ items: unknown[] }>(h, "GET", "/v1/revocations?limit=500")).body.items.length;
    const before = await count();
    const all = await admin.post("/console/revocations", { scope: "all", reason: "oops" });
    expect(all.status).toBe(200);
    expect(all.html).toContain("every link issued so far, in every campaign");
    expect(all.html).toContain('name="confirm" value="yes"');
    const contest = await admin.post("/console/revocations", {
      scope: "contest",
      contestId,
      reason: "drill",
    });
    expect(contest.status).toBe(200);
    expect(contest.html).toContain(`every link of contest <strong>${contestId}</strong>`);
    expect(contest.html).toContain("1 active link");
    expect(await count()).toBe(before);
    const confirmed = await admin.post("/console/revocations", {
      scope: "contest",
      contestId,
      reason: "drill",
      confirm: "yes",
    });
    expect(confirmed.status).toBe(303);
    expect(await count()).toBe(before + 1);
  });

  it("a revocation the API would refuse comes back as its form, filled in and naming what to fix, never a confirmation", async () => {
    const { campaignId } = await seedOpen(h);
    const admin = await signedIn(ADMIN);
    await admin.get("/console/revocations");
    const count = async () =>
      (await callJson<{ items: unknown[] }>(h, "GET", "/v1/revocations?limit=500")).body.items.length;
    const before = await count();
    const kept = (html: string, name: string, value: string) =>
      expect(html).toMatch(new RegExp(`name="${name}"[^>]* value="${value}"`));

    // No campaign named: the confirmation said "every link of campaign ." and the API then refused.
    const missing = await admin.post("/console/revocations", { scope: "campaign", reason: "left early" });
    expect(missing.status).toBe(400);
    expect(missing.html).toContain("Campaign id is needed to revoke a campaign");
    expect(missing.html).not.toContain('name="confirm"');
    expect(missing.html).toMatch(/<option value="campaign" selected="">/);
    kept(missing.html, "reason", "left early");

    // A field the scope does not use: the confirmation named the whole campaign, then the API refused it.
    const unused = await admin.post("/console/revocations", {
      scope: "campaign",
      campaignId,
      phase: "open",
      reason: "left early",
    });
    expect(unused.status).toBe(400);
    expect(unused.html).toContain("Phase is not used when revoking a campaign");
    expect(unused.html).not.toContain('name="confirm"');
    kept(unused.html, "campaignId", campaignId);
    kept(unused.html, "phase", "open");

    // Refused by the API: the form again, as it was typed.
    const unknown = await admin.post("/console/revocations", {
      scope: "link",
      linkId: "lnk_AAAAAAAAAAAAAAAAAAAAAA",
      reason: "lost phone",
    });
    expect(unknown.status).toBe(404);
    expect(unknown.html).toContain("Nothing was revoked.");
    kept(unknown.html, "linkId", "lnk_AAAAAAAAAAAAAAAAAAAAAA");
    kept(unknown.html, "reason", "lost phone");
    expect(await count()).toBe(before);
  });
});

describe("database unreachable", () => {
  it("the audit export answers 503 with the unavailable notice, not an empty file nor a bare 400", async () => {
    const down = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    // The export reads the events table itself (no repository): every select of it fails.
    const db = new Proxy(h.deps.db, {
      get: (target, prop, receiver) =>
        prop === "select"
          ? () => {
              throw down;
            }
          : Reflect.get(target, prop, receiver),
    });
    const app = createApp({ ...h.deps, db });
    const b = new Browser(app);
    expect((await b.signIn(ADMIN)).status).toBe(303);
    const res = await b.get("/console/audit/export");
    expect(res.res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(res.status).toBe(503);
    expect(res.html).toContain("try again shortly");
    const api = await app.request("/v1/audit/export", { headers: { authorization: `Bearer ${ADMIN}` } });
    expect({ status: api.status, code: ((await api.json()) as { code?: string }).code }).toEqual({
      status: 503,
      code: "unavailable",
    });
  });

  it("the contests page answers 503 with the unavailable notice, not 'does not list contests'", async () => {
    const down = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    const app = createApp({
      ...h.deps,
      repos: {
        ...h.deps.repos,
        contests: { ...h.deps.repos.contests, listPage: () => Promise.reject(down) },
      },
    });
    const b = new Browser(app);
    expect((await b.signIn(ADMIN)).status).toBe(303);
    const res = await b.get("/console/contests");
    expect(res.status).toBe(503);
    expect(res.html).toContain("try again shortly");
    expect(res.html).not.toContain("does not list contests");
  });

  it.each([
    ["campaigns", "/console/campaigns"],
    ["apiKeys", "/console/api-keys"],
  ] as const)(
    "the %s list page answers 503 with the unavailable notice, not 'does not list'",
    async (repo, path) => {
      const down = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
      const app = createApp({
        ...h.deps,
        repos: { ...h.deps.repos, [repo]: { ...h.deps.repos[repo], listPage: () => Promise.reject(down) } },
      });
      const b = new Browser(app);
      expect((await b.signIn(ADMIN)).status).toBe(303);
      const res = await b.get(path);
      expect(res.status).toBe(503);
      expect(res.html).toContain("try again shortly");
      expect(res.html).not.toContain("does not list");
    },
  );

  it.each([
    ["campaigns", "get", "/console/campaigns/camp-x"],
    ["contests", "get", "/console/contests/contest-x"],
    ["links", "getWithStatus", "/console/links/lnk_x/revoke"],
    ["revocations", "list", "/console/revocations"],
    ["campaigns", "get", "/console/progress?campaignId=camp-x"],
  ] as const)("%s.%s failing: %s answers 503 with the unavailable notice", async (repo, method, path) => {
    const down = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    const app = createApp({
      ...h.deps,
      repos: { ...h.deps.repos, [repo]: { ...h.deps.repos[repo], [method]: () => Promise.reject(down) } },
    });
    const b = new Browser(app);
    expect((await b.signIn(ADMIN)).status).toBe(303);
    const res = await b.get(path);
    expect(res.html).toContain("try again shortly");
    expect(res.status).toBe(503);
  });

  it("the signing keys page answers 503 with the unavailable notice, not an empty list of keys", async () => {
    const down = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    const keys = Object.create(h.deps.keys) as typeof h.deps.keys;
    keys.jwks = () => Promise.reject(down);
    const b = new Browser(createApp({ ...h.deps, keys }));
    expect((await b.signIn(ADMIN)).status).toBe(303);
    const res = await b.get("/console/signing-keys");
    expect(res.html).toContain("try again shortly");
    expect(res.status).toBe(503);
  });

  it("a console page answers 503 (never 500) when the database cannot be reached", async () => {
    const { campaignId } = await seedOpen(h);
    const key = await createKey(h, "coordinator", campaignId);
    const down = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:5432"), { code: "ECONNREFUSED" });
    const app = createApp({
      ...h.deps,
      repos: {
        ...h.deps.repos,
        apiKeys: { ...h.deps.repos.apiKeys, findActiveByKey: () => Promise.reject(down) },
      },
    });
    const body = new URLSearchParams({ apiKey: key.key }).toString();
    const res = await app.request("/console/sign-in", {
      method: "POST",
      body,
      headers: { "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "same-origin" },
    });
    expect(res.status).toBe(503);
    const html = await res.text();
    expect(html).toContain("Try again shortly");
    expect(html).not.toContain(key.key);
    expect(res.headers.get("content-security-policy")).toBe(CONSOLE_CSP);
  });
});
