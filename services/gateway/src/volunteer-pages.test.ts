import { addClosure } from "@phaselock/policy";
import { T0_SECONDS } from "@phaselock/tokens/testing";
import { cspHash, FALLBACK_CONTACT, LOCAL_TIME_SCRIPT, utcText, VOLUNTEER_STYLE } from "@phaselock/ui";
import { describe, expect, it } from "vitest";
import {
  REFUSALS,
  type RefusalCode,
  type RefusalContext,
  refusal,
  refusalPage,
  renderRefusal,
  VOLUNTEER_MESSAGE_HEADER,
} from "./refusals.ts";
import { errorCode, gatewayFixture } from "./test-support.ts";

// The gateway's volunteer pages (landing, refusal, signed-out) as a volunteer's phone gets them:
// one shared look, plain words, whom to ask, local times, and never the token.

const DAY = 86_400;
const CONTACT = "Sam Organiser <sam@starmer-2020.example>, 07700 900456";
const CONTACT_HTML = "Sam Organiser &#60;sam@starmer-2020.example&#62;, 07700 900456";
const HTML = { accept: "text/html,application/xhtml+xml" };

async function fixture() {
  const g = await gatewayFixture();
  g.snapshot.campaigns.get("starmer-2020")!.contact = CONTACT;
  return g;
}

/** What every volunteer page of the gateway shares: the stylesheet, its CSP, no token, no caching. */
async function expectVolunteerPage(res: Response, token?: string): Promise<string> {
  expect(res.headers.get("content-type")).toContain("text/html");
  expect(res.headers.get("cache-control")).toBe("no-store");
  expect(res.headers.get("referrer-policy")).toBe("no-referrer");
  const csp = res.headers.get("content-security-policy")!;
  expect(csp).toContain(`style-src ${cspHash(VOLUNTEER_STYLE)}`);
  expect(csp).toContain(`script-src ${cspHash(LOCAL_TIME_SCRIPT)}`);
  expect(csp).toContain("default-src 'none'");
  expect(csp).toContain("frame-ancestors 'none'");
  expect(csp).not.toContain("unsafe-inline");
  const html = await res.text();
  expect(html).toContain(`<style>${VOLUNTEER_STYLE}</style>`);
  expect(html).toContain(`<script>${LOCAL_TIME_SCRIPT}</script>`);
  expect(html).toContain('<header class="pl-top"><span>Phone bank</span></header>');
  // Exactly one style and one script, both the hashed ones: nothing else could run under the CSP.
  expect(html.match(/<style>/g)).toHaveLength(1);
  expect(html.match(/<script>/g)).toHaveLength(1);
  expect(html).not.toMatch(/\b(src|href)=["']?(https?:)?\/\//i);
  if (token) expect(html).not.toContain(token);
  return html;
}

const timeOf = (d: Date) => `<time datetime="${d.toISOString()}">`;

describe("the landing page", () => {
  it("says what the link is for, until when (local time), whom to ask, and offers Start calling", async () => {
    const g = await fixture();
    const exp = T0_SECONDS + 5 * DAY;
    const token = await g.issue({ exp });
    const res = await g.get(`/l/${token}`, HTML);
    expect(res.status).toBe(200);
    const html = await expectVolunteerPage(res, token);
    expect(html).toContain("Keir Starmer 2020");
    // the campaign's id too, as the coordinator and the console name it
    expect(html).toContain('Keir Starmer 2020 <span class="muted">(starmer-2020)</span>');
    expect(html).toContain("Leadership election 2020");
    expect(html).toContain("<dt>Phase</dt><dd>ballot</dd>");
    expect(html).toContain(timeOf(new Date(exp * 1000)));
    expect(html).toContain(CONTACT_HTML);
    expect(html).not.toContain(CONTACT); // escaped, never raw
    expect(html).toMatch(/<button type="submit" class="primary">Start calling<\/button>/);
  });

  it("names the coordinator who sent the link when the campaign has no contact", async () => {
    const g = await gatewayFixture();
    const token = await g.issue();
    const html = await (await g.get(`/l/${token}`, HTML)).text();
    expect(html).toContain(FALLBACK_CONTACT);
  });
});

describe("refusal pages: status, plain words, whom to ask, local time, never the token", () => {
  const revoke = (g: Awaited<ReturnType<typeof fixture>>, linkId: string) =>
    g.revocations.add({
      id: `rev_${linkId}`,
      scope: "link",
      linkId,
      reason: "left the team",
      actor: "admin",
      effectiveAt: new Date(T0_SECONDS * 1000),
    });

  type Case = {
    code: string;
    status: number;
    /** a time the page must show as a <time> */
    time?: Date;
    contact: boolean;
    make: (g: Awaited<ReturnType<typeof fixture>>) => Promise<string>;
  };
  const cases: Case[] = [
    {
      code: "expired",
      status: 410,
      time: new Date((T0_SECONDS - 60) * 1000),
      contact: true,
      make: (g) => g.issue({ iat: T0_SECONDS - DAY, nbf: T0_SECONDS - DAY, exp: T0_SECONDS - 60 }),
    },
    {
      code: "phase_closed",
      status: 410,
      // nominations ended a day before T0 (demoSnapshot)
      time: new Date((T0_SECONDS - DAY) * 1000),
      contact: true,
      make: (g) => g.issue({ phs: "nominations", exp: T0_SECONDS + 10 * DAY }),
    },
    {
      code: "revoked",
      status: 410,
      contact: true,
      make: async (g) => {
        const token = await g.issue({ jti: "lnk_gone" });
        revoke(g, "lnk_gone");
        return token;
      },
    },
    {
      code: "uses_exhausted",
      status: 410,
      contact: true,
      make: async (g) => {
        const token = await g.issue({ jti: "lnk_used" }, 1);
        g.links.rows.get("lnk_used")!.uses = 1;
        return token;
      },
    },
    {
      code: "not_yet_valid",
      status: 403,
      time: new Date((T0_SECONDS + 21 * DAY) * 1000),
      contact: true,
      make: (g) => g.issue({ phs: "hustings", nbf: T0_SECONDS + 21 * DAY, exp: T0_SECONDS + 22 * DAY }),
    },
    {
      code: "not_entitled",
      status: 403,
      contact: true,
      make: (g) => {
        g.snapshot.entitlements.delete("starmer-2020");
        return g.issue();
      },
    },
    { code: "token_invalid", status: 401, contact: false, make: async () => "not.a.token" },
  ];

  it("a link mangled on its way (a trailing slash, more after it) gets the token_invalid page, not a bare 404", async () => {
    const g = await fixture();
    const token = await g.issue();
    for (const path of [`/l/${token}/`, `/l/${token}/more`, "/l/"]) {
      const res = await g.get(path, HTML);
      expect([path, res.status]).toEqual([path, 401]);
      const html = await expectVolunteerPage(res, token);
      expect(html).toContain("Reference: token_invalid");
      const posted = await g.app.request(path, { method: "POST", headers: { accept: "application/json" } });
      expect([path, posted.status, await errorCode(posted)]).toEqual([path, 401, "token_invalid"]);
    }
    // Other methods are no way of opening a link: not found, whatever the path holds.
    expect((await g.app.request(`/l/${token}`, { method: "PUT" })).status).toBe(404);
    // Each is a landing-page refusal, and so an event (naming no link), as every other one is.
    const refused = g.events().filter((e) => e.type === "access" && e.decision === "deny");
    expect(refused.map((e) => [e.reason, e.linkId ?? null, (e.data as { route: string }).route])).toEqual(
      [1, 2, 3].flatMap(() => [
        ["token_invalid", null, "GET /l/:token"],
        ["token_invalid", null, "POST /l/:token"],
      ]),
    );
  });

  it.each(cases)("$code: $status", async ({ code, status, time, contact, make }) => {
    const g = await fixture();
    const token = await make(g);
    const res = await g.get(`/l/${token}`, HTML);
    expect(res.status).toBe(status);
    const html = await expectVolunteerPage(res, token);
    expect(html).toContain(`Reference: ${code}`);
    expect(html).toContain('<section class="refusal"');
    if (time) expect(html).toContain(timeOf(time));
    if (contact) {
      expect(html).toContain(CONTACT_HTML);
      expect(html).toContain("Keir Starmer 2020");
    } else {
      // A token that does not verify names nothing: not even its campaign's contact.
      expect(html).toContain(FALLBACK_CONTACT);
      expect(html).not.toContain("Sam Organiser");
    }
    // The same refusal as JSON: the stable code, times as UTC text.
    const json = await g.get(`/l/${token}`, { accept: "application/json" });
    expect(await errorCode(json)).toBe(code);
  });

  type PbCase = {
    code: string;
    status: number;
    path?: string;
    time?: Date;
    contact: boolean;
    /** the session credential to send, or null for none */
    make: (g: Awaited<ReturnType<typeof fixture>>) => Promise<string | null>;
  };
  const pbCases: PbCase[] = [
    { code: "token_missing", status: 401, contact: false, make: async () => null },
    { code: "token_invalid", status: 401, contact: false, make: async () => "pls_notAsessionAtAll000000" },
    {
      code: "expired",
      status: 401,
      time: new Date((T0_SECONDS + 60) * 1000),
      contact: true,
      make: async (g) => {
        const s = await g.session({ exp: T0_SECONDS + 60 });
        g.clock.set((T0_SECONDS + 120) * 1000);
        return s;
      },
    },
    {
      code: "phase_closed",
      status: 403,
      contact: true,
      make: (g) => g.session({ phs: "nominations", exp: T0_SECONDS + 10 * DAY }),
    },
    {
      code: "scope_denied",
      status: 403,
      path: "/pb/members/export",
      contact: true,
      make: (g) => g.session(),
    },
    {
      code: "not_entitled",
      status: 403,
      path: "/pb/members/m_000001",
      contact: true,
      make: (g) => {
        g.snapshot.entitlements.set("starmer-2020", new Map([["ballot", new Set(["calls:read" as const])]]));
        return g.session();
      },
    },
    {
      code: "unavailable",
      status: 503,
      contact: false, // the policy state is not current: nothing in it is told
      make: async (g) => {
        const s = await g.session();
        g.setFresh(false);
        return s;
      },
    },
  ];

  it.each(pbCases)("/pb $code: $status, as a page", async ({ code, status, path, time, contact, make }) => {
    const g = await fixture();
    const session = await make(g);
    const headers: Record<string, string> = { ...HTML };
    if (session) headers.authorization = `Bearer ${session}`;
    const res = await g.app.request(path ?? "/pb/calls/next", { headers });
    expect(res.status).toBe(status);
    const html = await expectVolunteerPage(res, session ?? undefined);
    expect(html).toContain(`Reference: ${code}`);
    if (time) expect(html).toContain(timeOf(time));
    expect(html).toContain(contact ? CONTACT_HTML : FALLBACK_CONTACT);
  });

  it("a refused /pb request from a browser gets the same page, naming the contact", async () => {
    const g = await fixture();
    const session = await g.session({ jti: "lnk_pb" });
    revoke(g, "lnk_pb");
    const res = await g.app.request("/pb/", { headers: { ...HTML, authorization: `Bearer ${session}` } });
    expect(res.status).toBe(403);
    const html = await expectVolunteerPage(res, session);
    expect(html).toContain("This link has been switched off");
    expect(html).toContain(CONTACT_HTML);
  });

  it("a rate-limited page still names whom to ask; a passing refusal does not speak of mistakes", async () => {
    const g = await fixture();
    g.snapshot.campaigns.get("starmer-2020")!.limits = { requestsPerMinute: 1 };
    const session = await g.session();
    const headers = { ...HTML, authorization: `Bearer ${session}` };
    expect((await g.app.request("/pb/calls/next", { headers })).status).toBe(200);
    const res = await g.app.request("/pb/calls/next", { headers });
    expect(res.status).toBe(429);
    const html = await expectVolunteerPage(res, session);
    expect(html).toContain(CONTACT_HTML);
    expect(html).toContain("If this keeps happening, ask");
  });
});

describe("a session that timed out says so (token_invalid), not that the link is not valid", () => {
  it("as a page: its own heading and words, what to do, and whom to ask; as JSON: the same code", async () => {
    const g = await fixture();
    g.deps.config.sessionTtlSeconds = 600;
    const session = await g.redeem(await g.issue());
    g.clock.set((T0_SECONDS + 600) * 1000);
    const res = await g.app.request("/pb/calls/next", {
      headers: { ...HTML, authorization: `Bearer ${session}` },
    });
    expect(res.status).toBe(401);
    const html = await expectVolunteerPage(res, session);
    expect(html).toContain("Reference: token_invalid");
    expect(html).toContain("<title>Your session has timed out</title>");
    expect(html).toContain("Your calling session on this device has timed out.");
    expect(html).toContain("open the link you were sent again and press Start calling");
    expect(html).not.toContain("not valid");
    expect(html).toContain(CONTACT_HTML);

    const json = await g.bearer(session, "/pb/calls/next", { headers: { accept: "application/json" } });
    expect(json.status).toBe(401);
    expect(((await json.json()) as { error: unknown }).error).toMatchObject({
      code: "token_invalid",
      message: "This session has timed out. Open the link again to start a new one.",
    });
  });

  it("an unknown or signed-out session is still told only that it does not work", async () => {
    const g = await fixture();
    const session = await g.session();
    await g.app.request("/pb/_phaselock/session/end", {
      method: "POST",
      headers: { authorization: `Bearer ${session}` },
    });
    for (const credential of [session, "pls_notAsessionAtAll000000"]) {
      const res = await g.app.request("/pb/calls/next", {
        headers: { ...HTML, authorization: `Bearer ${credential}` },
      });
      expect(res.status).toBe(401);
      const html = await res.text();
      expect(html).toContain("<title>This link does not work</title>");
      expect(html).not.toContain("timed out");
      expect(html).not.toContain("Sam Organiser");
    }
  });
});

describe("phase_closed names when the phase stopped taking the link, never a time to come", () => {
  const HOUR = 3600;
  const messageOf = async (res: Response) =>
    ((await res.json()) as { error: { message: string } }).error.message;

  it("a phase switched off early and re-opened by a later timeline: the closure time, not its new end", async () => {
    const g = await fixture();
    const closedAt = new Date((T0_SECONDS - HOUR) * 1000);
    addClosure(g.snapshot.closures, { contestId: "leadership-2020", phase: "ballot", closedAt });
    // ballot still runs in the timeline (it ends 21 days after T0): the window was re-opened
    const endsAt = g.snapshot.contests
      .get("leadership-2020")!
      .phases.find((p) => p.name === "ballot")!.endsAt;
    expect(endsAt.getTime()).toBeGreaterThan(g.clock.now().getTime());
    const token = await g.issue({ iat: T0_SECONDS - 2 * HOUR, nbf: T0_SECONDS - 2 * HOUR });

    const res = await g.get(`/l/${token}`, HTML);
    expect(res.status).toBe(410);
    const html = await expectVolunteerPage(res, token);
    expect(html).toContain(`which ended at ${timeOf(closedAt)}`);
    expect(html).not.toContain(timeOf(endsAt));
    const json = await messageOf(await g.get(`/l/${token}`, { accept: "application/json" }));
    expect(json).toBe(
      `This link was for the ballot phase of Leadership election 2020, which ended at ${utcText(closedAt)}.`,
    );

    const session = await g.session({ iat: T0_SECONDS - 2 * HOUR, nbf: T0_SECONDS - 2 * HOUR });
    const pb = await g.bearer(session, "/pb/calls/next", { headers: { accept: "application/json" } });
    expect(pb.status).toBe(403);
    expect(await messageOf(pb)).toContain(`which ended at ${utcText(closedAt)}.`);
  });

  it("a phase whose window has not come (moved later): 403, it may later, naming its new start, no end time", async () => {
    const g = await fixture();
    // hustings starts 21 days after T0; a link valid from yesterday is refused by the phase check
    const token = await g.issue({ phs: "hustings", iat: T0_SECONDS - DAY, nbf: T0_SECONDS - DAY });
    const res = await g.get(`/l/${token}`, HTML);
    expect(res.status).toBe(403);
    const html = await expectVolunteerPage(res, token);
    expect(html).toContain("Reference: phase_closed");
    expect(html).toContain("which now starts at");
    expect(html).not.toContain("which ended at");
    const json = await messageOf(await g.get(`/l/${token}`, { accept: "application/json" }));
    expect(json).toMatch(
      /^This link was for the hustings phase of Leadership election 2020, which now starts at .+ UTC; the link works from then\.$/,
    );
  });
});

describe("every refusal page speaks to a volunteer", () => {
  const variants: Array<[string, RefusalCode, RefusalContext]> = [
    ...(Object.keys(REFUSALS) as RefusalCode[]).map((c): [string, RefusalCode, RefusalContext] => [c, c, {}]),
    ["token_invalid (session timed out)", "token_invalid", { sessionTimedOut: true }],
    ["quota_exceeded (the campaign's)", "quota_exceeded", { quotaOf: "campaign" }],
  ];
  it.each(variants)("%s: plain words, no API jargon, whom to ask", (_, code, extra) => {
    const html = refusalPage(
      refusal(code, { contact: CONTACT, startsAt: new Date(0), expiresAt: new Date(0), ...extra }),
    );
    const main = html.slice(html.indexOf("<main>"), html.indexOf("</main>"));
    expect(main).not.toMatch(/Authorization|Bearer|POST |API|gateway|request body/i);
    expect(main).toContain(CONTACT_HTML);
    expect(main).toContain(`<h1 id="refusal-title">`);
  });
});

describe("a JSON refusal carries the volunteer's words beside the API message", () => {
  // The body is exactly the contract's shape; the volunteer's words travel in a header.
  const bodyOf = async (res: Response) => {
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(Object.keys(body)).toEqual(["error"]);
    expect(Object.keys(body.error).sort()).toEqual(["code", "message"]);
    const header = res.headers.get(VOLUNTEER_MESSAGE_HEADER);
    expect(header).toMatch(/^[\x21-\x7e]+$/);
    return { ...body.error, volunteerMessage: decodeURIComponent(header ?? "") };
  };

  it("the page's words where they differ from the API's: no session on /pb", async () => {
    const g = await fixture();
    const error = await bodyOf(await g.get("/pb/calls/next", { accept: "application/json" }));
    expect(error.code).toBe("token_missing");
    expect(error.message).toContain("Authorization: Bearer");
    expect(error.volunteerMessage).toBe(
      "This device is not signed in to the phone bank. Open the link you were sent and press Start calling.",
    );
  });

  it("the message where it already speaks to a volunteer, times as UTC text", async () => {
    const g = await fixture();
    const exp = T0_SECONDS + 60;
    const session = await g.session({ exp });
    g.clock.set((T0_SECONDS + 120) * 1000);
    const error = await bodyOf(
      await g.bearer(session, "/pb/calls/next", { headers: { accept: "application/json" } }),
    );
    expect(error.code).toBe("expired");
    expect(error.volunteerMessage).toBe(`This link expired at ${utcText(new Date(exp * 1000))}.`);
    expect(error.volunteerMessage).toBe(error.message);
  });

  it.each(Object.keys(REFUSALS) as RefusalCode[])("%s: no API jargon, never the token", (code) => {
    const rendered = renderRefusal(
      refusal(code, { startsAt: new Date(0), expiresAt: new Date(0) }),
      undefined,
      "req",
    );
    const words = decodeURIComponent(rendered.headers[VOLUNTEER_MESSAGE_HEADER] ?? "");
    expect(words.length).toBeGreaterThan(10);
    expect(words).not.toMatch(/Authorization|Bearer|POST |API|gateway|request body|<|>/i);
  });
});

describe("the contact reaches the calling page", () => {
  it("as X-Phaselock-Contact, always percent-encoded; a client's own is dropped", async () => {
    const g = await fixture();
    g.snapshot.campaigns.get("starmer-2020")!.contact = "Zoë 100% <z@example.org>";
    const session = await g.session();
    await g.bearer(session, "/pb/", { headers: { "x-phaselock-contact": "evil" } });
    const seen = g.phonebank.seen.at(-1)!;
    expect(seen.headers.get("x-phaselock-contact")).toBe(encodeURIComponent("Zoë 100% <z@example.org>"));

    g.snapshot.campaigns.get("starmer-2020")!.contact = undefined;
    await g.bearer(session, "/pb/", { headers: { "x-phaselock-contact": "evil" } });
    expect(g.phonebank.seen.at(-1)!.headers.get("x-phaselock-contact")).toBeNull();
  });
});

describe("ending a session", () => {
  async function browserSession(g: Awaited<ReturnType<typeof fixture>>) {
    const token = await g.issue();
    const res = await g.app.request(`/l/${token}`, { method: "POST" });
    return res.headers
      .getSetCookie()
      .find((c) => c.startsWith("pl_session="))!
      .split(";")[0]!;
  }

  it("a form posted from another site (or a sibling origin) is refused cross_site; the session lives on", async () => {
    const g = await fixture();
    const cookie = await browserSession(g);
    // A browser on a password-protected site sends its Basic credentials with a forged form too:
    // that is no script's bearer, and the cookie's cross-site rule still holds.
    const basic = { authorization: "Basic c3RhZ2luZzpwdw==" };
    for (const headers of [
      { origin: "http://evil.example" },
      { origin: "http://127.0.0.1:9999" },
      { "sec-fetch-site": "cross-site" },
      { origin: "null" },
      { origin: "http://127.0.0.1:9999", "sec-fetch-site": "same-site", ...basic },
    ]) {
      const res = await g.app.request("http://127.0.0.1:8080/pb/_phaselock/session/end", {
        method: "POST",
        headers: { ...HTML, cookie, ...headers },
      });
      expect([headers, res.status]).toEqual([headers, 403]);
      expect(await res.text()).toContain("Reference: cross_site");
    }
    expect((await g.app.request("/pb/calls/next", { headers: { cookie } })).status).toBe(200);
    // The calling page's own form there still signs out as a browser's: to the signed-out page.
    const own = await g.app.request("http://127.0.0.1:8080/pb/_phaselock/session/end", {
      method: "POST",
      headers: {
        ...HTML,
        cookie,
        ...basic,
        origin: "http://127.0.0.1:8080",
        "sec-fetch-site": "same-origin",
      },
    });
    expect([own.status, own.headers.get("location")]).toEqual([303, "/signed-out"]);
  });

  it("the calling page's own form signs out: 303 to the signed-out page, which shares the look", async () => {
    const g = await fixture();
    const cookie = await browserSession(g);
    const res = await g.app.request("http://127.0.0.1:8080/pb/_phaselock/session/end", {
      method: "POST",
      headers: { ...HTML, cookie, origin: "http://127.0.0.1:8080", "sec-fetch-site": "same-origin" },
    });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/signed-out");
    expect((await g.app.request("/pb/calls/next", { headers: { cookie } })).status).toBe(401);
    const page = await g.get("/signed-out", HTML);
    expect(page.status).toBe(200);
    const html = await expectVolunteerPage(page);
    expect(html).toContain("You are signed out");
    expect(html).toContain("Start calling");
  });
});
