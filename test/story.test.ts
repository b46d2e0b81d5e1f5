/**
 * The product's story end to end, in one process: token service, gateway and phone bank over one
 * in-memory PGlite database and the in-process change feed, on one FakeClock.
 */
import { createMemoryDb } from "@phaselock/db/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  errorCode,
  issue,
  landing,
  MEMBER_SCOPES,
  nextCall,
  pb,
  putCampaign,
  putContest,
  redeem,
  tokenOf,
  tryIssue,
  uid,
} from "./support/client.ts";
import { memoryFeed } from "./support/feeds.ts";
import { DAY, type GatewayApp, type Stack, startStack } from "./support/stack.ts";

let stack: Stack;
let gw: GatewayApp;
const now = () => stack.clock.now().getTime();

beforeAll(async () => {
  const handle = await createMemoryDb();
  stack = await startStack({ db: { handle, drop: () => handle.close() }, feed: memoryFeed() });
  gw = stack.gateways[0]!.app;
});

afterAll(async () => {
  await stack?.close();
});

describe("the 2020 incident: a ge-2019 link left over", () => {
  it("is refused with phase_closed once the timeline says the phase ended in 2019, and its landing page is 410", async () => {
    // The general-election timeline was left open, and a link was issued against it...
    const ge2019 = uid("ge-2019");
    const phase = { name: "campaign", startsAt: "2019-11-06T00:00:00.000Z", memberData: true };
    await putContest(stack, ge2019, [{ ...phase, endsAt: new Date(now() + 60 * DAY) }]);
    const campaignId = uid("labour-ge-2019");
    await putCampaign(stack, campaignId, ge2019, { campaign: MEMBER_SCOPES });
    const leftover = await issue(stack, { campaignId, phase: "campaign" });
    expect((await landing(gw, leftover.token)).status).toBe(200);

    // ...then the timeline was set to what it really was.
    await putContest(stack, ge2019, [{ ...phase, endsAt: "2019-12-12T22:00:00.000Z" }]);

    expect(await nextCall(gw, await stack.session(leftover.token))).toEqual({
      status: 403,
      code: "phase_closed",
    });
    for (const path of ["/", "/members/m_000001"]) {
      const res = await pb(gw, path, { bearer: await stack.session(leftover.token) });
      expect([res.status, await errorCode(res)]).toEqual([403, "phase_closed"]);
    }
    const page = await landing(gw, leftover.token);
    expect(page.status).toBe(410);
    expect(page.headers.get("cache-control")).toBe("no-store");
    expect(page.headers.get("referrer-policy")).toBe("no-referrer");
    const html = await page.text();
    expect(html).toContain("phase_closed");
    expect(html).not.toContain(leftover.token);
    const json = await landing(gw, leftover.token, "application/json");
    expect([json.status, await errorCode(json)]).toEqual([410, "phase_closed"]);
    // Nor can it be redeemed into a session.
    const { res, cookie } = await redeem(gw, leftover.token);
    expect([res.status, await errorCode(res)]).toEqual([403, "phase_closed"]);
    expect(cookie).toBeNull();
  });
});

describe("a ballot that is running now", () => {
  let contestId: string;
  let starmer: string;
  let longBailey: string;

  beforeAll(async () => {
    contestId = uid("leadership-2020");
    await putContest(stack, contestId, [
      {
        name: "nominations",
        startsAt: new Date(now() - 14 * DAY),
        endsAt: new Date(now() - DAY),
        memberData: false,
      },
      {
        name: "ballot",
        startsAt: new Date(now() - DAY),
        endsAt: new Date(now() + 21 * DAY),
        memberData: true,
      },
    ]);
    starmer = uid("starmer-2020");
    longBailey = uid("long-bailey-2020");
    await putCampaign(stack, starmer, contestId, { ballot: MEMBER_SCOPES });
    await putCampaign(stack, longBailey, contestId);
  });

  it("refuses issuance to a campaign not yet entitled, and refuses at the gateway once entitlement is withdrawn", async () => {
    const refused = await tryIssue(stack, { campaignId: longBailey, phase: "ballot" });
    expect([refused.status, refused.body.code]).toEqual([403, "not_entitled"]);

    await putCampaign(stack, longBailey, contestId, { ballot: ["calls:read", "calls:write"] });
    const partly = await tryIssue(stack, { campaignId: longBailey, phase: "ballot" });
    expect([partly.status, partly.body.code]).toEqual([403, "not_entitled"]); // members:read not granted
    const link = await issue(stack, { campaignId: longBailey, phase: "ballot", scopes: ["calls:read"] });
    const session = await redeem(gw, link.token);
    expect(session.res.status).toBe(303);
    expect(await nextCall(gw, await stack.session(link.token))).toEqual({ status: 200, code: null });

    const withdrawn = await stack.api("DELETE", `/v1/campaigns/${longBailey}/entitlements/ballot`);
    expect(withdrawn.status).toBe(204);
    expect(await nextCall(gw, await stack.session(link.token))).toEqual({
      status: 403,
      code: "not_entitled",
    });
    const bySession = await pb(gw, "/calls/next", { cookie: session.cookie! });
    expect([bySession.status, await errorCode(bySession)]).toEqual([403, "not_entitled"]);
    // It may work again later (403, not 410): granting again restores it.
    expect((await landing(gw, link.token)).status).toBe(403);
    await putCampaign(stack, longBailey, contestId, { ballot: ["calls:read"] });
    expect(await nextCall(gw, await stack.session(link.token))).toEqual({ status: 200, code: null });
  });

  it("works by cookie and by bearer; the phone bank gets the context headers and never the credential", async () => {
    const link = await issue(stack, {
      campaignId: starmer,
      phase: "ballot",
      volunteer: { ref: "sm-volunteer-0002", name: "Demo volunteer" },
    });
    // The url is the short link; the token works on /l/ as well.
    expect(tokenOf(link.url)).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(link.url.startsWith("http://127.0.0.1:8080/l/")).toBe(true);
    const short = await landing(gw, tokenOf(link.url));
    expect(short.status).toBe(200);
    expect(await short.text()).toContain("Start calling");

    const page = await landing(gw, link.token);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("Start calling");

    const { res, cookie } = await redeem(gw, link.token);
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/pb/");
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(res.headers.get("location")).not.toContain(link.token);
    const setCookie = res.headers.get("set-cookie") ?? "";
    expect(setCookie).toMatch(/HttpOnly/i);
    expect(setCookie).toMatch(/SameSite=Strict/i);
    expect(setCookie).toMatch(/Path=\/pb/);
    expect(cookie).not.toBeNull();

    const seenBefore = stack.phonebank.seen.length;
    const byCookie = await pb(gw, "/calls/next", { cookie: cookie! });
    expect(byCookie.status).toBe(200);
    const callingPage = await pb(gw, "/", { cookie: cookie!, accept: "text/html" });
    expect(callingPage.status).toBe(200);
    const byBearer = await pb(gw, "/calls/next", { bearer: await stack.session(link.token) });
    expect(byBearer.status).toBe(200);
    const call = ((await byBearer.json()) as { call: { id: string } }).call;
    type Progress = { items: { ref: string; callsMade: number; opened: number; activeSessions: number }[] };
    const progressOf = async () =>
      (
        (await stack.api("GET", `/v1/campaigns/${starmer}/progress?phase=ballot&limit=500`)).body as Progress
      ).items.find((v) => v.ref === "sm-volunteer-0002");
    const before = await progressOf();
    const outcome = await pb(gw, `/calls/${call.id}/outcome`, {
      bearer: await stack.session(link.token),
      method: "POST",
      body: { outcome: "answered" },
    });
    expect(outcome.status).toBe(201);
    // The console's progress counts the call: the gateway's allowed `calls:write` request.
    const after = await progressOf();
    expect(after?.callsMade).toBe((before?.callsMade ?? 0) + 1);
    expect(after?.opened).toBeGreaterThanOrEqual(1);
    expect(after?.activeSessions).toBeGreaterThanOrEqual(1);

    const reached = stack.phonebank.seen.slice(seenBefore);
    expect(reached.map((r) => `${r.method} ${r.path}`)).toEqual([
      "GET /calls/next",
      "GET /",
      "GET /calls/next",
      `POST /calls/${call.id}/outcome`,
    ]);
    for (const r of reached) {
      expect(r.headers.get("cookie")).toBeNull();
      expect(r.headers.get("authorization")).toBeNull();
      for (const [name, value] of r.headers) {
        expect(value, `header ${name} carries the token`).not.toContain(link.token);
      }
      expect(r.headers.get("x-phaselock-campaign")).toBe(starmer);
      expect(r.headers.get("x-phaselock-volunteer")).toBe("sm-volunteer-0002");
      expect(r.headers.get("x-phaselock-link")).toBe(link.id);
      expect(r.headers.get("x-phaselock-scopes")).toBe("calls:read calls:write members:read");
    }
  });

  it("never lets member fields outside the allow-list reach the volunteer", async () => {
    const link = await issue(stack, { campaignId: starmer, phase: "ballot" });
    const seenBefore = stack.phonebank.seen.length;

    const next = await pb(gw, "/calls/next", { bearer: await stack.session(link.token) });
    expect(next.status).toBe(200);
    const text = await next.text();
    const body = JSON.parse(text) as { call: { id: string; member: Record<string, unknown> } };
    expect(Object.keys(body.call.member).sort()).toEqual(["constituency", "id", "name", "phone", "ward"]);

    const memberId = String(body.call.member.id);
    const one = await pb(gw, `/members/${memberId}`, { bearer: await stack.session(link.token) });
    expect(one.status).toBe(200);
    const oneText = await one.text();
    expect(Object.keys(JSON.parse(oneText)).sort()).toEqual(["constituency", "id", "name", "phone", "ward"]);

    // The phone bank did send them: the gateway removed them.
    const upstream = stack.phonebank.seen.slice(seenBefore).map((r) => JSON.parse(r.body));
    expect(upstream[0].call.member).toHaveProperty("email");
    expect(upstream[1]).toHaveProperty("dateOfBirth");
    for (const [field, value] of Object.entries(upstream[1] as Record<string, string>)) {
      if (["email", "dateOfBirth", "address", "membershipNumber", "notes"].includes(field)) {
        expect(text, field).not.toContain(`"${field}"`);
        expect(oneText, field).not.toContain(`"${field}"`);
        if (value.length >= 4) expect(oneText, field).not.toContain(value);
      }
    }

    // And bulk export is never reachable through a link.
    const exported = await pb(gw, "/members/export", { bearer: await stack.session(link.token) });
    expect([exported.status, await errorCode(exported)]).toEqual([403, "scope_denied"]);
  });

  it("counts a use per redemption, exactly maxUses under concurrent POSTs, and none for the landing page", async () => {
    const link = await issue(stack, { campaignId: starmer, phase: "ballot", maxUses: 3 });
    for (let i = 0; i < 5; i++) expect((await landing(gw, link.token)).status).toBe(200);
    expect((await stack.api(`GET`, `/v1/links/${link.id}`)).body.uses).toBe(0);

    // Ten scripts are ten devices: room for them all, so only the use count refuses.
    const config = stack.gateways[0]!.wiring.deps.config;
    config.maxDevicesPerLink = 100;
    const results = await Promise.all(Array.from({ length: 10 }, () => redeem(gw, link.token))).finally(
      () => {
        config.maxDevicesPerLink = 3;
      },
    );
    const statuses = results.map((r) => r.res.status).sort();
    expect(statuses).toEqual([303, 303, 303, 403, 403, 403, 403, 403, 403, 403]);
    for (const r of results.filter((x) => x.res.status === 403))
      expect(await errorCode(r.res)).toBe("uses_exhausted");
    expect((await stack.api(`GET`, `/v1/links/${link.id}`)).body.uses).toBe(3);

    // Used up: the landing page says so for good, while the sessions already opened keep working.
    const page = await landing(gw, link.token, "application/json");
    expect([page.status, await errorCode(page)]).toEqual([410, "uses_exhausted"]);
    const session = results.find((r) => r.res.status === 303)!;
    expect((await pb(gw, "/calls/next", { cookie: session.cookie! })).status).toBe(200);
  });

  it("ending the phase early ends its sessions and its bearer links at once", async () => {
    const bearer = await issue(stack, { campaignId: starmer, phase: "ballot" });
    const other = await issue(stack, { campaignId: starmer, phase: "ballot" });
    const { cookie } = await redeem(gw, other.token);
    expect((await pb(gw, "/calls/next", { cookie: cookie! })).status).toBe(200);
    expect(await nextCall(gw, await stack.session(bearer.token))).toEqual({ status: 200, code: null });

    await putContest(stack, contestId, [
      {
        name: "nominations",
        startsAt: new Date(now() - 14 * DAY),
        endsAt: new Date(now() - DAY),
        memberData: false,
      },
      { name: "ballot", startsAt: new Date(now() - DAY), endsAt: new Date(now()), memberData: true },
    ]);

    const bySession = await pb(gw, "/calls/next", { cookie: cookie! });
    expect([bySession.status, await errorCode(bySession)]).toEqual([403, "phase_closed"]);
    expect(await nextCall(gw, await stack.session(bearer.token))).toEqual({
      status: 403,
      code: "phase_closed",
    });
    expect((await landing(gw, bearer.token)).status).toBe(410);
    const link = await stack.api(`GET`, `/v1/links/${bearer.id}`);
    expect(link.body.status).toBe("expired");
  });
});

describe("a link issued ahead for a later phase", () => {
  it("is not_yet_valid until the phase starts, then works", async () => {
    const contestId = uid("leadership");
    const ballotStarts = new Date(now() + 2 * DAY);
    await putContest(stack, contestId, [
      { name: "nominations", startsAt: new Date(now() - DAY), endsAt: ballotStarts, memberData: false },
      { name: "ballot", startsAt: ballotStarts, endsAt: new Date(now() + 30 * DAY), memberData: true },
    ]);
    const campaignId = uid("campaign");
    await putCampaign(stack, campaignId, contestId, { ballot: MEMBER_SCOPES });

    const link = await issue(stack, { campaignId, phase: "ballot" });
    expect(link.notBefore).toBe(ballotStarts.toISOString());

    expect(await nextCall(gw, await stack.session(link.token))).toEqual({
      status: 401,
      code: "not_yet_valid",
    });
    const early = await landing(gw, link.token);
    expect(early.status).toBe(403);
    const earlyHtml = await early.text();
    expect(earlyHtml).not.toContain(link.token);
    // "the page says when"
    expect(earlyHtml).toContain(ballotStarts.toUTCString().replace(" GMT", " UTC"));
    const tooSoon = await redeem(gw, link.token);
    expect([tooSoon.res.status, await errorCode(tooSoon.res)]).toEqual([401, "not_yet_valid"]);

    await stack.advance(ballotStarts.getTime() - now() - 1000);
    expect(await nextCall(gw, await stack.session(link.token))).toEqual({
      status: 401,
      code: "not_yet_valid",
    });

    await stack.advance(1000);
    expect((await landing(gw, link.token)).status).toBe(200);
    expect(await nextCall(gw, await stack.session(link.token))).toEqual({ status: 200, code: null });
    const { res, cookie } = await redeem(gw, link.token);
    expect(res.status).toBe(303);
    expect((await pb(gw, "/calls/next", { cookie: cookie! })).status).toBe(200);
    expect((await stack.api(`GET`, `/v1/links/${link.id}`)).body.uses).toBe(1);
  });
});

describe("limits and expiry", () => {
  it("a campaign's limits, set at the token service, are enforced by the gateway", async () => {
    const contestId = uid("contest");
    await putContest(stack, contestId, [
      { name: "open", startsAt: new Date(now() - DAY), endsAt: new Date(now() + 30 * DAY), memberData: true },
    ]);
    const campaignId = uid("campaign");
    await putCampaign(stack, campaignId, contestId, { open: MEMBER_SCOPES });
    const limited = await stack.api("PUT", `/v1/campaigns/${campaignId}`, {
      body: { name: "Limited", contestId, limits: { requestsPerMinute: 3, recordsPerHour: 2 } },
    });
    expect(limited.status).toBe(200);
    const link = await issue(stack, { campaignId, phase: "open" });

    const first = await pb(gw, "/calls/next", { bearer: await stack.session(link.token) });
    expect(first.status).toBe(200);
    const seenId = ((await first.json()) as { call: { member: { id: string } } }).call.member.id;
    expect(await nextCall(gw, await stack.session(link.token))).toEqual({ status: 200, code: null });
    const third = await pb(gw, "/calls/next", { bearer: await stack.session(link.token) });
    expect([third.status, await errorCode(third)]).toEqual([429, "quota_exceeded"]);
    const fourth = await pb(gw, "/", { bearer: await stack.session(link.token), accept: "text/html" });
    expect(fourth.status).toBe(429);
    expect(Number(fourth.headers.get("retry-after"))).toBeGreaterThan(0);

    await stack.advance(60_000);
    // A record already seen costs nothing; a new one is still over the hour's quota.
    expect((await pb(gw, `/members/${seenId}`, { bearer: await stack.session(link.token) })).status).toBe(
      200,
    );
    expect(await nextCall(gw, await stack.session(link.token))).toEqual({
      status: 429,
      code: "quota_exceeded",
    });
  });

  it("a link past its exp is expired: 401 at /pb, 410 on the landing page", async () => {
    const contestId = uid("contest");
    await putContest(stack, contestId, [
      { name: "open", startsAt: new Date(now() - DAY), endsAt: new Date(now() + 30 * DAY), memberData: true },
    ]);
    const campaignId = uid("campaign");
    await putCampaign(stack, campaignId, contestId, { open: MEMBER_SCOPES });
    const link = await issue(stack, { campaignId, phase: "open", ttlSeconds: 60 });
    expect(new Date(link.expiresAt).getTime() - new Date(link.notBefore).getTime()).toBe(60_000);
    expect(await nextCall(gw, await stack.session(link.token))).toEqual({ status: 200, code: null });
    const { cookie } = await redeem(gw, link.token);

    await stack.advance(60_000);
    expect(await nextCall(gw, await stack.session(link.token))).toEqual({ status: 401, code: "expired" });
    const bySession = await pb(gw, "/calls/next", { cookie: cookie! });
    expect([bySession.status, await errorCode(bySession)]).toEqual([401, "expired"]);
    expect((await landing(gw, link.token)).status).toBe(410);
  });
});

describe("the audit trail", () => {
  it("holds what every service recorded, in one hash chain that verifies", async () => {
    await stack.advance(0);
    const verify = await stack.api<{ ok: boolean; events: number }>("GET", "/v1/audit/verify");
    expect(verify.status).toBe(200);
    expect(verify.body.ok).toBe(true);
    const denied = await stack.api<{ items: Array<{ type: string; reason: string | null }> }>(
      "GET",
      "/v1/audit?decision=deny&limit=500",
    );
    const reasons = new Set(denied.body.items.map((e) => e.reason));
    for (const r of ["phase_closed", "not_entitled", "uses_exhausted", "not_yet_valid"])
      expect(reasons).toContain(r);

    // No event holds a link token (they are credentials): page through the whole trail.
    let cursor: string | null = null;
    let events = 0;
    do {
      const page: { body: { items: unknown[]; nextCursor: string | null } } = await stack.api(
        "GET",
        `/v1/audit?limit=500${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
      );
      events += page.body.items.length;
      expect(JSON.stringify(page.body.items)).not.toMatch(/eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/);
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(events).toBe(verify.body.events);
  });
});
