import { generateSigningKey, signLink } from "@phaselock/tokens";
import { claimsAt, T0_SECONDS } from "@phaselock/tokens/testing";
import { describe, expect, it } from "vitest";
import { credentialHash } from "./sessions.ts";
import { errorCode, gatewayFixture } from "./test-support.ts";

const json = { accept: "application/json" };
const post = (
  g: Awaited<ReturnType<typeof gatewayFixture>>,
  path: string,
  headers: { [name: string]: string | undefined } = {},
) =>
  g.app.request(path, {
    method: "POST",
    headers: Object.fromEntries(
      Object.entries(headers).filter((h): h is [string, string] => h[1] !== undefined),
    ),
  });
const sessionCookie = (res: Response) => res.headers.getSetCookie().find((c) => c.startsWith("pl_session="));
const deviceCookie = (res: Response) =>
  res.headers
    .getSetCookie()
    .find((c) => c.startsWith("pl_device="))
    ?.split(";")[0];

describe("sessions: a link opens a session and never is one", () => {
  it("a maxUses:1 link whose use is spent is session_required on /pb, as bearer and as hand-set cookie", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_once" }, 1);
    expect((await post(g, `/l/${token}`)).status).toBe(303);
    const bearer = await g.bearer(token, "/pb/members/m_000001");
    expect([bearer.status, await errorCode(bearer)]).toEqual([401, "session_required"]);
    const cookie = await g.get("/pb/members/m_000001", { cookie: `pl_session=${token}` });
    expect([cookie.status, await errorCode(cookie)]).toEqual([401, "session_required"]);
    const page = await g.get("/pb/", { cookie: `pl_session=${token}`, accept: "text/html" });
    expect(page.status).toBe(401);
    expect(await page.text()).toContain("Start calling");
    expect(g.phonebank.seen).toHaveLength(0);
  });

  it("a link token ending a session is session_required too, as bearer and as cookie", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_end" });
    for (const headers of [{ authorization: `Bearer ${token}` }, { cookie: `pl_session=${token}` }]) {
      const res = await post(g, "/pb/_phaselock/session/end", { ...json, ...headers });
      expect([res.status, await errorCode(res)]).toEqual([401, "session_required"]);
    }
    const missing = await post(g, "/pb/_phaselock/session/end", json);
    expect(((await missing.json()) as { error: { message: string } }).error.message).not.toContain(
      "link token",
    );
  });

  it("JSON redemption answers 201 {session, expiresAt} with the cookie; the audit names the session id only", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_json" });
    const res = await post(g, `/l/${token}`, json);
    expect(res.status).toBe(201);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    const body = (await res.json()) as { session: string; expiresAt: string };
    expect(body.session).toMatch(/^pls_[A-Za-z0-9_-]{22}$/);
    expect(body.session).not.toContain(token.split(".")[1]!);
    expect(sessionCookie(res)).toMatch(new RegExp(`^pl_session=${body.session};`));
    expect((await g.bearer(body.session)).status).toBe(200);
    const redeemed = g.events().find((e) => e.type === "link.redeemed")!;
    expect((redeemed.data as { session: string }).session).toMatch(/^ses_/);
    expect(JSON.stringify(g.events())).not.toContain(body.session);
    // only the hash is stored
    expect(JSON.stringify([...g.sessionStore.rows.values()])).not.toContain(body.session);
  });

  it("a session expires at the link's exp at the latest, and after SESSION_TTL_SECONDS sooner", async () => {
    const g = await gatewayFixture();
    // the fixture's links end an hour after T0: the session is capped there
    const short = (await (await post(g, `/l/${await g.issue()}`, json)).json()) as { expiresAt: string };
    expect(short.expiresAt).toBe(new Date((T0_SECONDS + 3600) * 1000).toISOString());
    g.deps.config.sessionTtlSeconds = 600;
    const res = await post(g, `/l/${await g.issue()}`, json);
    const ttl = (await res.json()) as { session: string; expiresAt: string };
    expect(ttl.expiresAt).toBe(new Date((T0_SECONDS + 600) * 1000).toISOString());
    expect(sessionCookie(res)).toMatch(/Max-Age=600/);
    g.clock.set((T0_SECONDS + 599) * 1000);
    expect((await g.bearer(ttl.session)).status).toBe(200);
    g.clock.set((T0_SECONDS + 600) * 1000);
    const after = await g.bearer(ttl.session);
    const body = (await after.json()) as { error: { code: string; message: string } };
    expect([after.status, body.error.code]).toEqual([401, "token_invalid"]);
    // It was a real session that ran out: it says so, not that the link "is not valid".
    expect(body.error.message).toBe("This session has timed out. Open the link again to start a new one.");
  });

  it("a revoked signing key ends the sessions opened from its links (token_invalid)", async () => {
    const g = await gatewayFixture();
    const session = await g.session();
    expect((await g.bearer(session)).status).toBe(200);
    g.ring.set({ keys: [] });
    const res = await g.bearer(session);
    expect([res.status, await errorCode(res)]).toEqual([401, "token_invalid"]);
  });

  it("POST /pb/_phaselock/session/end ends it: 204 for a bearer, 303 to the signed-out page for a browser", async () => {
    const g = await gatewayFixture();
    const a = await g.session();
    const ended = await post(g, "/pb/_phaselock/session/end", { authorization: `Bearer ${a}` });
    expect(ended.status).toBe(204);
    const after = await g.bearer(a);
    expect([after.status, await errorCode(after)]).toEqual([401, "token_invalid"]);

    const b = await g.session();
    const browser = await post(g, "/pb/_phaselock/session/end", {
      cookie: `pl_session=${b}`,
      accept: "text/html",
    });
    expect([browser.status, browser.headers.get("location")]).toEqual([303, "/signed-out"]);
    expect(sessionCookie(browser)).toMatch(/Max-Age=0/);
    expect((await g.bearer(b)).status).toBe(401);
    const page = await g.get("/signed-out", { accept: "text/html" });
    expect(await page.text()).toContain("signed out");
    expect(g.phonebank.seen).toHaveLength(0);
  });

  it("a session used after it was signed out is refused with an event naming its link, never an anonymous one", async () => {
    const g = await gatewayFixture();
    // The volunteer forwarded the session (cookie or bearer), then signed out; the rival goes on.
    const token = await g.issue({ jti: "lnk_forwarded", sub: "vol-fwd" });
    const session = await g.redeem(token);
    expect((await g.bearer(session, "/pb/members/m_000001")).status).toBe(200);
    expect((await post(g, "/pb/_phaselock/session/end", { authorization: `Bearer ${session}` })).status).toBe(
      204,
    );
    const sent: Record<string, string>[] = [
      { authorization: `Bearer ${session}` },
      { cookie: `pl_session=${session}` },
    ];
    for (const headers of sent) {
      const res = await g.get("/pb/members/m_000002", headers);
      expect([res.status, await errorCode(res)]).toEqual([401, "token_invalid"]);
    }
    const denied = g.events().filter((e) => e.type === "access" && e.decision === "deny");
    expect(denied.map((e) => [e.reason, e.linkId, e.actor, e.campaignId])).toEqual([
      ["token_invalid", "lnk_forwarded", "vol-fwd", "starmer-2020"],
      ["token_invalid", "lnk_forwarded", "vol-fwd", "starmer-2020"],
    ]);
    expect(g.phonebank.seen.filter((r) => r.path === "/members/m_000002")).toHaveLength(0);
  });

  it("unknown credentials are remembered briefly: random guesses cost one query each, not one per request", async () => {
    const g = await gatewayFixture();
    const guess = "pls_0123456789abcdefghijkl";
    for (let i = 0; i < 5; i++) expect((await g.bearer(guess)).status).toBe(401);
    expect(g.sessionStore.queries).toBe(1);
    const real = await g.session();
    for (let i = 0; i < 5; i++) expect((await g.bearer(real)).status).toBe(200);
    expect(g.sessionStore.queries).toBe(2);
  });
});

describe("the session steps come first on /pb", () => {
  it("a link is session_required and an ended session token_invalid, whatever else is wrong with them", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_first", phs: "nominations", scp: ["calls:read"] });
    const session = await g.openSession("lnk_first");
    g.revocations.add({
      id: "rev_first",
      scope: "link",
      linkId: "lnk_first",
      reason: "test",
      actor: "admin",
      effectiveAt: new Date(T0_SECONDS * 1000),
    });
    g.setFresh(false);
    const link = await g.bearer(token, "/pb/members/export");
    expect([link.status, await errorCode(link)]).toEqual([401, "session_required"]);
    expect((await g.bearer(session)).status).toBe(503); // then the stale state answers
    await g.deps.endSession(credentialHash(session), g.clock.now());
    const ended = await g.bearer(session, "/pb/members/export");
    expect([ended.status, await errorCode(ended)]).toEqual([401, "token_invalid"]);
  });
});

describe("same-site redemption", () => {
  it("Sec-Fetch-Site: cross-site or a foreign Origin is 403 cross_site and counts no use; scripts and same-site work", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_csrf" }, 10);
    g.deps.config.maxDevicesPerLink = 10;
    const refused: Record<string, string>[] = [
      { "sec-fetch-site": "cross-site" },
      { origin: "https://evil.example" },
      { origin: "null" },
      { origin: "null", "sec-fetch-site": "same-site" },
      { origin: "null", "sec-fetch-site": "cross-site" },
      // The contract: an Origin that is not the gateway's is refused; same-origin excuses only "null".
      { origin: "https://evil.example", "sec-fetch-site": "same-origin" },
    ];
    for (const headers of refused) {
      const res = await post(g, `/l/${token}`, headers);
      expect([JSON.stringify(headers), res.status, await errorCode(res)]).toEqual([
        JSON.stringify(headers),
        403,
        "cross_site",
      ]);
    }
    expect(g.links.rows.get("lnk_csrf")!.uses).toBe(0);
    expect(g.sessionStore.rows.size).toBe(0);
    const allowed: Record<string, string>[] = [
      {},
      { "sec-fetch-site": "same-origin", origin: "http://localhost" },
      // What Chromium sends from the landing page, whose Referrer-Policy is no-referrer.
      { "sec-fetch-site": "same-origin", origin: "null" },
      { "sec-fetch-site": "none" },
    ];
    for (const headers of allowed) {
      expect((await post(g, `/l/${token}`, headers)).status).toBe(303);
    }
    g.deps.config.publicGatewayUrl = "https://gw.example.org/";
    expect((await post(g, `/l/${token}`, { origin: "https://gw.example.org" })).status).toBe(303);
  });
});

describe("a redemption from another site, in the audit trail", () => {
  it("names the link it tried (a signed link or a short code); a credential that is no link names none", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_tried" }, 10);
    const { code } = await g.issueCode({ jti: "lnk_tried_code" });
    const from = { origin: "https://evil.example" };
    for (const credential of [token, code, "not-a-link"]) {
      const res = await post(g, `/l/${credential}`, from);
      expect([res.status, await errorCode(res)]).toEqual([403, "cross_site"]);
    }
    const denied = g.events().filter((e) => e.reason === "cross_site");
    expect(denied.map((e) => [e.linkId, e.campaignId, e.actor])).toEqual([
      ["lnk_tried", "starmer-2020", expect.any(String)],
      ["lnk_tried_code", "starmer-2020", expect.any(String)],
      [null, null, null],
    ]);
    expect(g.links.rows.get("lnk_tried")!.uses).toBe(0);
    expect(g.sessionStore.rows.size).toBe(0);
  });
});

describe("devices you can count", () => {
  it("eight redemptions with the same invented pl_device and eight User-Agents: the fourth suspends", async () => {
    const g = await gatewayFixture();
    g.deps.config.maxDevicesPerLink = 3;
    const token = await g.issue({ jti: "lnk_invented" }, 20);
    const statuses: number[] = [];
    for (let n = 1; n <= 8; n++) {
      const res = await post(g, `/l/${token}`, {
        cookie: "pl_device=dev_invented0000000000",
        "user-agent": `ua-${n}`,
      });
      statuses.push(res.status);
    }
    expect(statuses.slice(0, 3)).toEqual([303, 303, 303]);
    expect(statuses[3]).toBe(403);
    expect(g.suspended.has("lnk_invented")).toBe(true);
  });

  it("suspends on the devices of the link's stored sessions, never on a count someone wrote into the store", async () => {
    const g = await gatewayFixture();
    g.deps.config.maxDevicesPerLink = 3;
    const token = await g.issue({ jti: "lnk_planted" }, 20);
    // Someone who can write to Redis fills the link's device set (as it was kept before).
    for (const junk of ["dev_a", "dev_b", "dev_c", "dev_d"]) {
      await g.recordQuota.admit(
        "dv:link:lnk_planted",
        junk,
        { limit: 100, windowMs: 91 * 86_400_000 },
        g.clock.now(),
      );
    }
    expect((await post(g, `/l/${token}`, json)).status).toBe(201);
    expect(g.suspended.has("lnk_planted")).toBe(false);
  });

  it("counts a link's devices over its whole life, across any window boundary", async () => {
    const g = await gatewayFixture();
    g.deps.config.maxDevicesPerLink = 3;
    // The old count lived in 91-day windows from the epoch: one ended at 2020-04-30T00:00Z.
    const boundary = Date.parse("2020-04-30T00:00:00Z") / 1000;
    const ballot = g.snapshot.contests.get("leadership-2020")!.phases.find((p) => p.name === "ballot")!;
    ballot.endsAt = new Date((boundary + 86_400) * 1000);
    g.clock.set((boundary - 600) * 1000);
    const token = await g.issue(
      { jti: "lnk_boundary", iat: boundary - 600, nbf: boundary - 600, exp: boundary + 3600 },
      20,
    );
    for (let n = 0; n < 3; n++) expect((await post(g, `/l/${token}`, json)).status).toBe(201);
    g.clock.set((boundary + 600) * 1000);
    expect((await post(g, `/l/${token}`, json)).status).toBe(403);
    expect(g.suspended.has("lnk_boundary")).toBe(true);
  });

  it("a forged tag on a well-formed device id counts as no device", async () => {
    const g = await gatewayFixture();
    const real = deviceCookie(await g.get(`/l/${await g.issue()}`))!;
    const forged = `${real.slice(0, -4)}AAAA`;
    expect(g.deps.devices.verify(real.slice("pl_device=".length))).toMatch(/^dev_/);
    expect(g.deps.devices.verify(forged.slice("pl_device=".length))).toBeNull();
  });

  it("the same device re-opening its link continues its session: no use spent, the old credential retired", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_again" }, 2);
    const cookie = deviceCookie(await g.get(`/l/${token}`))!;
    const first = (await (await post(g, `/l/${token}`, { ...json, cookie })).json()) as { session: string };
    expect(g.links.rows.get("lnk_again")!.uses).toBe(1);
    const second = (await (await post(g, `/l/${token}`, { ...json, cookie })).json()) as { session: string };
    expect(g.links.rows.get("lnk_again")!.uses).toBe(1);
    expect(g.sessionStore.rows.size).toBe(1);
    expect(second.session).not.toBe(first.session);
    expect((await g.bearer(second.session)).status).toBe(200);
    expect((await g.bearer(first.session)).status).toBe(401);
  });

  it("re-opening a link is rate limited like its requests: 429 with Retry-After, and the refused one rotates nothing", async () => {
    // Anyone holding a link, a spent one too, re-opening it from one device again and again: each
    // re-open was a new credential and a policy change that every gateway's session cache re-reads.
    const g = await gatewayFixture();
    g.snapshot.campaigns.get("starmer-2020")!.limits = { requestsPerMinute: 3 };
    const token = await g.issue({ jti: "lnk_churn" }, 1);
    const cookie = deviceCookie(await g.get(`/l/${token}`))!;
    let session = "";
    for (let i = 0; i < 3; i++) {
      const res = await post(g, `/l/${token}`, { ...json, cookie });
      expect(res.status).toBe(201);
      session = ((await res.json()) as { session: string }).session;
    }
    const rotated = g.sessionStore.rows.get([...g.sessionStore.rows.keys()][0]!)!.tokenHash;
    const res = await post(g, `/l/${token}`, { ...json, cookie });
    expect([res.status, await errorCode(res)]).toEqual([429, "rate_limited"]);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    expect(g.sessionStore.rows.get([...g.sessionStore.rows.keys()][0]!)!.tokenHash).toBe(rotated);
    const browser = await post(g, `/l/${token}`, { cookie, accept: "text/html" });
    expect(browser.status).toBe(429);
    expect(await browser.text()).toContain("Keir Starmer 2020");
    const denied = g.events().filter((e) => e.type === "access" && e.decision === "deny");
    expect(denied.map((e) => [e.reason, e.linkId])).toEqual([
      ["rate_limited", "lnk_churn"],
      ["rate_limited", "lnk_churn"],
    ]);
    // The minute over, the last credential still works: the refused re-opens retired nothing.
    g.clock.advance(60_000);
    expect((await g.bearer(session)).status).toBe(200);
    expect(g.links.rows.get("lnk_churn")!.uses).toBe(1);
  });

  it("a device holding a live session of a spent link still gets its landing page and continues; others get 410", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_spent" }, 1);
    const cookie = deviceCookie(await g.get(`/l/${token}`))!;
    expect((await post(g, `/l/${token}`, { cookie })).status).toBe(303);
    const again = await g.get(`/l/${token}`, { cookie, accept: "text/html" });
    expect(again.status).toBe(200);
    const html = await again.text();
    expect(html).toContain("Start calling");
    expect(html).toContain("continues your calling session on this device");
    expect((await post(g, `/l/${token}`, { cookie })).status).toBe(303);
    expect(g.links.rows.get("lnk_spent")!.uses).toBe(1);
    const other = await g.get(`/l/${token}`, json);
    expect([other.status, await errorCode(other)]).toEqual([410, "uses_exhausted"]);
  });

  it("a redemption that finds its device's live session only in the counting transaction (a double tap) continues it", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_tap" }, 1);
    const cookie = deviceCookie(await g.get(`/l/${token}`))!;
    const first = (await (await post(g, `/l/${token}`, { ...json, cookie })).json()) as { session: string };
    // The second tap looked before the first had opened its session: only the transaction sees it.
    g.deps.sessions.findLive = async () => null;
    const second = await post(g, `/l/${token}`, { ...json, cookie });
    expect(second.status).toBe(201);
    const { session } = (await second.json()) as { session: string };
    expect(g.links.rows.get("lnk_tap")!.uses).toBe(1);
    expect(g.sessionStore.rows.size).toBe(1);
    expect((await g.bearer(session)).status).toBe(200);
    expect(await errorCode(await g.bearer(first.session))).toBe("token_invalid");
  });

  it("the old credential is retired even once this gateway has cached it", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_cached" }, 2);
    const cookie = deviceCookie(await g.get(`/l/${token}`))!;
    const first = (await (await post(g, `/l/${token}`, { ...json, cookie })).json()) as { session: string };
    expect((await g.bearer(first.session)).status).toBe(200);
    const second = (await (await post(g, `/l/${token}`, { ...json, cookie })).json()) as { session: string };
    expect((await g.bearer(second.session)).status).toBe(200);
    expect(await errorCode(await g.bearer(first.session))).toBe("token_invalid");
  });

  it("a client showing its live session of the link as its bearer continues it: same credential, no use", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_shown" }, 5);
    const first = (await (await post(g, `/l/${token}`, json)).json()) as {
      session: string;
      expiresAt: string;
    };
    for (let i = 0; i < 2; i++) {
      const res = await post(g, `/l/${token}`, { ...json, authorization: `Bearer ${first.session}` });
      expect(res.status).toBe(201);
      expect(await res.json()).toEqual(first);
    }
    expect(g.links.rows.get("lnk_shown")!.uses).toBe(1);
    expect(g.sessionStore.rows.size).toBe(1);
    expect((await g.bearer(first.session)).status).toBe(200);
    expect(g.events().filter((e) => e.type === "link.redeemed" && e.data?.continued === true)).toHaveLength(
      2,
    );

    // The session cookie never reaches /l from a browser (its path is /pb): one that does was
    // planted, and claims nothing; nor does a session of another link, or one that has ended.
    const planted = await post(g, `/l/${token}`, { ...json, cookie: `pl_session=${first.session}` });
    expect(((await planted.json()) as { session: string }).session).not.toBe(first.session);
    expect(g.links.rows.get("lnk_shown")!.uses).toBe(2);
    const other = (await (await post(g, `/l/${await g.issue({ jti: "lnk_other" }, 3)}`, json)).json()) as {
      session: string;
    };
    const res = await post(g, `/l/${token}`, { ...json, authorization: `Bearer ${other.session}` });
    expect(res.status).toBe(201);
    expect(((await res.json()) as { session: string }).session).not.toBe(other.session);
    expect(g.links.rows.get("lnk_shown")!.uses).toBe(3);
    const ended = await post(g, "/pb/_phaselock/session/end", {
      ...json,
      authorization: `Bearer ${first.session}`,
    });
    expect(ended.status).toBe(204);
    await post(g, `/l/${token}`, { ...json, authorization: `Bearer ${first.session}` });
    expect(g.links.rows.get("lnk_shown")!.uses).toBe(4);
  });
});

describe("a link is its own key's", () => {
  it("a token for a link signed by another known key (a stolen one) opens nothing: token_invalid, no use", async () => {
    const g = await gatewayFixture();
    await g.issue({ jti: "lnk_theirs" });
    const stolen = await generateSigningKey();
    await g.ring.add(stolen.kid, stolen.publicJwk);
    const forged = await signLink(
      stolen,
      claimsAt({ jti: "lnk_theirs", scp: ["calls:read", "members:read"] }),
    );
    expect(await errorCode(await g.get(`/l/${forged}`))).toBe("token_invalid");
    expect(await errorCode(await post(g, `/l/${forged}`, json))).toBe("token_invalid");
    expect(g.links.rows.get("lnk_theirs")!.uses).toBe(0);
    expect(g.sessionStore.rows.size).toBe(0);
  });
});

describe("short links", () => {
  it("/l/<code> serves the landing page and redeems, like /l/<token>; an unknown code is token_invalid", async () => {
    const g = await gatewayFixture();
    const { code, jti } = await g.issueCode();
    expect(code.length).toBeLessThanOrEqual(32);
    const landing = await g.get(`/l/${code}`, { accept: "text/html" });
    expect(landing.status).toBe(200);
    expect(await landing.text()).toContain("Start calling");
    const res = await post(g, `/l/${code}`, json);
    expect(res.status).toBe(201);
    expect(g.links.rows.get(jti)!.uses).toBe(1);
    const { session } = (await res.json()) as { session: string };
    expect((await g.bearer(session)).status).toBe(200);
    const code_ = await g.bearer(code);
    expect([code_.status, await errorCode(code_)]).toEqual([401, "session_required"]);
    const unknown = await post(g, "/l/AAAAAAAAAAAAAAAAAAAAAA");
    expect([unknown.status, await errorCode(unknown)]).toEqual([401, "token_invalid"]);
  });
});

describe("documentation", () => {
  it("the OpenAPI document names session_required, cross_site, the JSON redemption and session end", async () => {
    const g = await gatewayFixture();
    const doc = (await (await g.get("/openapi.json")).json()) as {
      paths: Record<string, Record<string, unknown>>;
    };
    const text = JSON.stringify(doc);
    expect(text).toContain("session_required");
    expect(text).toContain("cross_site");
    expect(doc.paths["/pb/_phaselock/session/end"]).toHaveProperty("post");
    expect(JSON.stringify(doc.paths["/l/{token}"])).toContain("expiresAt");
  });
});
