import { createHmac } from "node:crypto";
import { MemoryRateLimiter, MemoryRecordQuota } from "@phaselock/state";
import { generateSigningKey, signLink } from "@phaselock/tokens";
import { b64json, claimsAt, signRaw, T0_SECONDS } from "@phaselock/tokens/testing";
import { Hono } from "hono";
import { describe, expect, it } from "vitest";
import { createLimits } from "./limits.ts";
import { errorCode, fakePhonebank, gatewayFixture, UPSTREAM_SECRET } from "./test-support.ts";
import { UpstreamError } from "./upstream.ts";

const DAY = 86_400;

describe("gateway refusals, one per contract code", () => {
  it("token_missing: no cookie, no bearer (401 with WWW-Authenticate)", async () => {
    const g = await gatewayFixture();
    const res = await g.get("/pb/calls/next");
    expect(res.status).toBe(401);
    expect(await errorCode(res)).toBe("token_missing");
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer /);
  });

  it("token_invalid: garbage, and never echoes the token", async () => {
    const g = await gatewayFixture();
    for (const method of ["GET", "POST"]) {
      const res = await g.app.request("/l/not.a.token", { method });
      expect(res.status).toBe(401);
      const text = await res.text();
      expect(JSON.parse(text).error.code).toBe("token_invalid");
      expect(text).not.toContain("not.a.token");
    }
    const res = await g.bearer("pls_notAsessionAtAll000000");
    expect([res.status, await errorCode(res)]).toEqual([401, "token_invalid"]);
  });

  it("expired and not_yet_valid (401)", async () => {
    const g = await gatewayFixture();
    const token = await g.session();
    const later = await g.session({ nbf: T0_SECONDS + 7200, exp: T0_SECONDS + 9000 });
    g.clock.set((T0_SECONDS + 3600) * 1000);
    let res = await g.bearer(token);
    expect([res.status, await errorCode(res)]).toEqual([401, "expired"]);
    res = await g.bearer(later);
    expect([res.status, await errorCode(res)]).toEqual([401, "not_yet_valid"]);
  });

  it("revoked (403), checked before the phase", async () => {
    const g = await gatewayFixture();
    const token = await g.session({ jti: "lnk_revoked" });
    g.revocations.add({
      id: "rev_1",
      scope: "link",
      linkId: "lnk_revoked",
      reason: "test",
      actor: "admin",
      effectiveAt: new Date(T0_SECONDS * 1000),
    });
    const res = await g.bearer(token);
    expect([res.status, await errorCode(res)]).toEqual([403, "revoked"]);
  });

  it("phase_closed (403): the link's phase is not the current phase, whatever its exp", async () => {
    const g = await gatewayFixture();
    const token = await g.session({ phs: "nominations", exp: T0_SECONDS + 10 * DAY });
    const res = await g.bearer(token);
    expect([res.status, await errorCode(res)]).toEqual([403, "phase_closed"]);
  });

  it("scope_denied (403): missing scope, unmapped route, members:export", async () => {
    const g = await gatewayFixture();
    const readOnly = await g.session({ scp: ["calls:read"] });
    for (const [method, path] of [
      ["GET", "/pb/members/m_000001"],
      ["GET", "/pb/admin"],
      ["DELETE", "/pb/calls/next"],
      ["GET", "/pb/members/export"],
    ] as const) {
      const res = await g.bearer(readOnly, path, { method });
      expect([path, res.status, await errorCode(res)]).toEqual([path, 403, "scope_denied"]);
    }
    expect(g.phonebank.seen).toHaveLength(0);
  });

  it("not_entitled (403): the campaign lost the scope in this phase", async () => {
    const g = await gatewayFixture();
    const token = await g.session({ cmp: "long-bailey-2020", scp: ["calls:read", "members:read"] });
    const ok = await g.bearer(token, "/pb/calls/next");
    expect(ok.status).toBe(200);
    const res = await g.bearer(token, "/pb/members/m_000001");
    expect([res.status, await errorCode(res)]).toEqual([403, "not_entitled"]);
  });

  it("uses_exhausted (403): redemption beyond maxUses", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({}, 1);
    expect((await g.app.request(`/l/${token}`, { method: "POST" })).status).toBe(303);
    const res = await g.app.request(`/l/${token}`, { method: "POST" });
    expect([res.status, await errorCode(res)]).toEqual([403, "uses_exhausted"]);
  });

  it("rate_limited (429 with Retry-After)", async () => {
    const g = await gatewayFixture();
    g.snapshot.campaigns.get("starmer-2020")!.limits = { requestsPerMinute: 2 };
    const token = await g.session();
    expect((await g.bearer(token, "/pb/")).status).toBe(200);
    expect((await g.bearer(token, "/pb/")).status).toBe(200);
    const res = await g.bearer(token, "/pb/");
    expect([res.status, await errorCode(res)]).toEqual([429, "rate_limited"]);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(0);
    g.clock.advance(30_000);
    expect((await g.bearer(token, "/pb/")).status).toBe(200);
  });

  it("quota_exceeded (429): distinct member records per hour; records already seen are free", async () => {
    const g = await gatewayFixture();
    g.snapshot.campaigns.get("starmer-2020")!.limits = { recordsPerHour: 2 };
    const token = await g.session();
    expect((await g.bearer(token, "/pb/members/m_000001")).status).toBe(200);
    expect((await g.bearer(token, "/pb/members/m_000002")).status).toBe(200);
    expect((await g.bearer(token, "/pb/members/m_000001")).status).toBe(200);
    const res = await g.bearer(token, "/pb/members/m_000003");
    const text = await res.text();
    expect([res.status, JSON.parse(text).error.code]).toEqual([429, "quota_exceeded"]);
    expect(text).not.toContain("07700");
  });

  it("quota_exceeded before asking the upstream for a new record once the quota is spent", async () => {
    const g = await gatewayFixture();
    g.snapshot.campaigns.get("starmer-2020")!.limits = { recordsPerHour: 2 };
    const token = await g.session();
    expect((await g.bearer(token, "/pb/calls/next")).status).toBe(200);
    expect((await g.bearer(token, "/pb/calls/next")).status).toBe(200);
    const res = await g.bearer(token, "/pb/calls/next");
    expect([res.status, await errorCode(res)]).toEqual([429, "quota_exceeded"]);
    expect(g.phonebank.seen.filter((r) => r.path === "/calls/next")).toHaveLength(2);
  });

  it("quota_exceeded: the link's own quota blames the link, the campaign's blames the campaign", async () => {
    const g = await gatewayFixture();
    // A campaign may see as many records as one link, so a second link meets the campaign's quota.
    g.deps.limits = createLimits({
      rateLimiter: new MemoryRateLimiter(),
      recordQuota: new MemoryRecordQuota(),
      defaults: { campaignFactor: 1 },
    });
    g.snapshot.campaigns.get("starmer-2020")!.limits = { recordsPerHour: 2 };
    const message = async (res: Response) => {
      const body = (await res.json()) as { error: { code: string; message: string } };
      return [res.status, body.error.code, body.error.message];
    };
    const a = await g.session();
    expect((await g.bearer(a, "/pb/members/m_000001")).status).toBe(200);
    expect((await g.bearer(a, "/pb/members/m_000002")).status).toBe(200);
    const linkSpent = "This link has reached the number of member records it may see for now.";
    expect(await message(await g.bearer(a, "/pb/members/m_000003"))).toEqual([
      429,
      "quota_exceeded",
      linkSpent,
    ]);
    expect(await message(await g.bearer(a, "/pb/calls/next"))).toEqual([429, "quota_exceeded", linkSpent]);
    // Refused on the phone bank's answer (the record was fetched, then not admitted): the page still
    // names the campaign's contact, as a refusal before the upstream is asked does.
    g.snapshot.campaigns.get("starmer-2020")!.contact = "sam@starmer-2020.example";
    const onAnswer = await g.bearer(a, "/pb/members/m_000003", { headers: { accept: "text/html" } });
    expect(onAnswer.status).toBe(429);
    expect(await onAnswer.text()).toContain("sam@starmer-2020.example");

    const b = await g.session();
    const campaignSpent =
      "Your campaign has reached the number of member records it may see for now, across all its volunteers. Your link still works: try again later.";
    // after the answer (a member record) and before asking the upstream (the next call)
    expect(await message(await g.bearer(b, "/pb/members/m_000004"))).toEqual([
      429,
      "quota_exceeded",
      campaignSpent,
    ]);
    expect(await message(await g.bearer(b, "/pb/calls/next"))).toEqual([
      429,
      "quota_exceeded",
      campaignSpent,
    ]);
    // The calling page fetches JSON: the heading travels beside the words, in a header.
    const json = await g.bearer(b, "/pb/calls/next", { headers: { accept: "application/json" } });
    expect(decodeURIComponent(json.headers.get("phaselock-volunteer-title") ?? "")).toBe(
      "Your campaign has reached its limit for now",
    );
    const page = await g.bearer(b, "/pb/calls/next", { headers: { accept: "text/html" } });
    const html = await page.text();
    expect(html).toContain("<title>Your campaign has reached its limit for now</title>");
    expect(html).not.toContain("This link has reached");
  });

  it("unavailable (503): stale policy state or an audit trail that cannot be written", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_unavail" });
    const session = await g.openSession("lnk_unavail");
    g.setFresh(false);
    let res = await g.bearer(session);
    expect([res.status, await errorCode(res)]).toEqual([503, "unavailable"]);
    res = await g.app.request(`/l/${token}`, { method: "POST" });
    expect([res.status, await errorCode(res)]).toEqual([503, "unavailable"]);
    g.setFresh(true);
    g.setAuditHealthy(false);
    res = await g.bearer(session);
    expect([res.status, await errorCode(res)]).toEqual([503, "unavailable"]);
    g.setAuditHealthy(true);
    expect((await g.bearer(session)).status).toBe(200);
  });

  it("upstream_error: 502 when the upstream fails, 504 when it times out", async () => {
    for (const [code, status] of [
      ["upstream_unreachable", 502],
      ["upstream_timeout", 504],
    ] as const) {
      const g = await gatewayFixture({
        upstream: {
          forward: async () => {
            throw new UpstreamError(code, "x");
          },
        },
      });
      const res = await g.bearer(await g.session());
      expect([res.status, await errorCode(res)]).toEqual([status, "upstream_error"]);
    }
  });

  it("upstream_error: 502 when the upstream refuses the gateway itself (401, 407), on every kind of route", async () => {
    // A phone bank whose PHONEBANK_SECRET is not the gateway's answers 401 gateway_required: the
    // volunteer's page read it as its own session refused, and the audit said allow.
    for (const status of [401, 407]) {
      const g = await gatewayFixture({
        upstream: {
          forward: async () =>
            new Response('{"error":{"code":"gateway_required"}}', {
              status,
              headers: { "content-type": "application/json" },
            }),
        },
      });
      const session = await g.session({ jti: "lnk_hop" });
      const calls: [string, RequestInit?][] = [
        ["/pb/calls/next"],
        ["/pb/"],
        [
          "/pb/calls/c_1/outcome",
          { method: "POST", body: "{}", headers: { "content-type": "application/json" } },
        ],
      ];
      for (const [path, init] of calls) {
        const res = await g.bearer(session, path, init);
        const text = await res.text();
        expect([status, path, res.status, JSON.parse(text).error.code]).toEqual([
          status,
          path,
          502,
          "upstream_error",
        ]);
        expect(text).not.toContain("gateway_required");
      }
      const access = g.events().filter((e) => e.type === "access");
      expect(access.map((e) => [e.decision, e.reason, e.data?.upstream, e.data?.status])).toEqual(
        calls.map(() => ["deny", "upstream_error", "upstream_refused_gateway", status]),
      );
    }
    // The upstream's 403 (about the request, which it understood) is relayed as before.
    const g = await gatewayFixture({
      upstream: {
        forward: async () =>
          new Response("{}", { status: 403, headers: { "content-type": "application/json" } }),
      },
    });
    expect((await g.bearer(await g.session(), "/pb/members/m_000001")).status).toBe(403);
  });

  it("upstream_error: 502 when a minimised route's success is not JSON, never an empty 200", async () => {
    // An HTML error page or a front proxy's text with 200, or JSON that does not parse: the route
    // did not answer, and the phone bank may have assigned the call; a 404's text stays a 404.
    const answers: [number, string, string][] = [
      [200, "text/html; charset=utf-8", "<html><body>Service temporarily unavailable</body></html>"],
      [200, "application/json", '{"call": {"member": '],
      [201, "text/plain", "created"],
    ];
    for (const [status, type, body] of answers) {
      const g = await gatewayFixture({
        upstream: {
          forward: async () => new Response(body, { status, headers: { "content-type": type } }),
        },
      });
      const session = await g.session({ jti: "lnk_notjson" });
      for (const path of ["/pb/calls/next", "/pb/members/m_000042"]) {
        const res = await g.bearer(session, path);
        expect([path, type, res.status, await errorCode(res)]).toEqual([path, type, 502, "upstream_error"]);
      }
      const access = g.events().filter((e) => e.type === "access");
      expect(access.map((e) => [e.decision, e.reason, e.data?.upstream, e.data?.forwarded])).toEqual([
        ["deny", "upstream_error", "not_json", true],
        ["deny", "upstream_error", "not_json", true],
      ]);
    }
    const g = await gatewayFixture({
      upstream: {
        forward: async () =>
          new Response("no such member", { status: 404, headers: { "content-type": "text/plain" } }),
      },
    });
    const res = await g.bearer(await g.session(), "/pb/members/m_999999");
    expect([res.status, await res.json()]).toEqual([404, {}]);
  });
});

describe("attacks on the token: each is token_invalid", () => {
  it("alg none, HS256 keyed with the public key, a foreign key with a real kid, embedded jwk, tampered payload", async () => {
    const g = await gatewayFixture();
    const kid = g.key.kid;
    const payload = claimsAt({ jti: "lnk_attack", scp: ["calls:read", "members:read"] });
    await g.issue({ jti: "lnk_attack", scp: ["calls:read", "members:read"] });
    const none = `${b64json({ alg: "none", typ: "pbl+jwt", kid })}.${b64json(payload)}.`;
    const hsInput = `${b64json({ alg: "HS256", typ: "pbl+jwt", kid })}.${b64json(payload)}`;
    const hs = `${hsInput}.${createHmac("sha256", JSON.stringify(g.key.publicJwk)).update(hsInput).digest("base64url")}`;
    const foreign = await generateSigningKey();
    const selfSigned = await signLink({ kid, privateKey: foreign.privateKey }, payload);
    const embedded = await signRaw(
      { alg: "EdDSA", typ: "pbl+jwt", kid, jwk: foreign.publicJwk },
      payload as unknown as Record<string, unknown>,
      foreign.privateKey,
    );
    const genuine = await signLink(g.key, payload);
    const [h, , s] = genuine.split(".");
    const tampered = `${h}.${b64json({ ...payload, scp: "calls:read members:read members:export" })}.${s}`;

    // Links are only read on the landing page and redemption now (a link on /pb is session_required).
    for (const [name, token] of Object.entries({ none, hs, selfSigned, embedded, tampered })) {
      for (const method of ["GET", "POST"]) {
        const res = await g.app.request(`/l/${token}`, { method });
        expect([name, method, res.status, await errorCode(res)]).toEqual([
          name,
          method,
          401,
          "token_invalid",
        ]);
      }
    }
    expect(g.links.rows.get("lnk_attack")!.uses).toBe(0);
    expect(g.sessionStore.rows.size).toBe(0);
    expect((await g.bearer(await g.redeem(genuine))).status).toBe(200);
    expect(g.phonebank.seen).toHaveLength(1);
  });

  it("an oversized token is refused (4xx) and the gateway keeps serving", async () => {
    const g = await gatewayFixture();
    const res = await g.bearer("a".repeat(64 * 1024));
    expect(res.status).toBe(401);
    expect(await errorCode(res)).toBe("token_invalid");
    const landing = await g.app.request(`/l/${"a".repeat(64 * 1024)}`, { method: "POST" });
    expect(landing.status).toBeGreaterThanOrEqual(400);
    expect(landing.status).toBeLessThan(500);
    expect((await g.bearer(await g.session())).status).toBe(200);
  });

  it("encoded traversal toward /members/export never reaches the upstream", async () => {
    const g = await gatewayFixture();
    const token = await g.session();
    for (const path of [
      "/pb/members/..%2fexport",
      "/pb/calls/%2e%2e/members/export",
      "/pb/members/%252e%252e/export",
      "/pb//members/export",
      "/pb/members/./export",
      "/pb/members%2fexport",
      // a case-folding upstream router (ASP.NET, IIS) would read these as the export
      "/pb/members/EXPORT",
      "/pb/members/Export",
      "/pb/members/%45xport",
    ]) {
      const res = await g.bearer(token, path);
      expect([path, res.status]).toEqual([path, 403]);
    }
    expect(g.phonebank.seen.filter((r) => /export/i.test(r.path))).toHaveLength(0);
  });
});

describe("landing page and redemption", () => {
  it("GET /l/:token shows campaign and phase, consumes no use, is never cached or referred", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_land" }, 2);
    for (let i = 0; i < 5; i++) {
      const res = await g.get(`/l/${token}`, { accept: "text/html" });
      expect(res.status).toBe(200);
      expect(res.headers.get("referrer-policy")).toBe("no-referrer");
      expect(res.headers.get("cache-control")).toBe("no-store");
      const html = await res.text();
      expect(html).toContain("Keir Starmer 2020");
      expect(html).toContain("ballot");
      expect(html).toContain("Start calling");
      expect(html).not.toContain(token);
    }
    expect(g.links.rows.get("lnk_land")!.uses).toBe(0);
  });

  it("every landing page shown is one allow event naming the link (a gateway decision)", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_seen" }, 2);
    for (let i = 0; i < 3; i++)
      expect((await g.get(`/l/${token}`, { accept: "text/html" })).status).toBe(200);
    const shown = g.events().filter((e) => e.linkId === "lnk_seen");
    expect(shown).toHaveLength(3);
    for (const e of shown) {
      expect(e).toMatchObject({ type: "access", decision: "allow", campaignId: "starmer-2020" });
      expect(e.data).toMatchObject({ route: "GET /l/:token" });
    }
    expect(JSON.stringify(shown)).not.toContain(token);
  });

  it("a dead link gets the refusal page: 410 never again, 403 maybe later, 401 invalid", async () => {
    const g = await gatewayFixture();
    const leftover = await g.issue({ phs: "nominations" });
    const ahead = await g.issue({ phs: "hustings", nbf: T0_SECONDS + 21 * DAY, exp: T0_SECONDS + 22 * DAY });
    const cases = [
      [leftover, 410, "phase_closed"],
      [ahead, 403, "not_yet_valid"],
      ["garbage", 401, "token_invalid"],
    ] as const;
    for (const [token, status, code] of cases) {
      const res = await g.get(`/l/${token}`, { accept: "text/html" });
      expect([code, res.status]).toEqual([code, status]);
      expect(res.headers.get("content-type")).toContain("text/html");
      expect(res.headers.get("cache-control")).toBe("no-store");
      const html = await res.text();
      expect(html).toContain(code);
      expect(html).not.toContain(token === "garbage" ? "garbage" : token);
    }
    const page = await (await g.get(`/l/${leftover}`, { accept: "text/html" })).text();
    expect(page).toContain("Leadership election 2020");
    expect(page).toContain("nominations");
  });

  it("POST /l/:token: 303 to /pb/ with a strict session cookie that then works", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_post" });
    const res = await g.app.request(`/l/${token}`, { method: "POST" });
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/pb/");
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    expect(res.headers.get("cache-control")).toBe("no-store");
    const cookie = res.headers.getSetCookie().find((c) => c.startsWith("pl_session="))!;
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Strict/i);
    expect(cookie).toMatch(/Path=\/pb/);
    expect(cookie).not.toMatch(/Secure/);
    expect(g.links.rows.get("lnk_post")!.uses).toBe(1);

    const session = cookie.split(";")[0]!;
    const call = await g.app.request("/pb/calls/next", { headers: { cookie: session } });
    expect(call.status).toBe(200);
    // A browser behind a password-protected site (HTTP Basic in front) sends that with every
    // request: the cookie still counts. A malformed bearer does not fall back to it.
    const basic = { cookie: session, authorization: "Basic dm9sdW50ZWVyOnN0YWdpbmc=" };
    expect((await g.app.request("/pb/calls/next", { headers: basic })).status).toBe(200);
    const badBearer = await g.app.request("/pb/calls/next", {
      headers: { cookie: session, authorization: "Bearer" },
    });
    expect([badBearer.status, await errorCode(badBearer)]).toEqual([401, "token_missing"]);
    // every later request re-checks the link: revoke it and the session dies
    g.revocations.add({
      id: "r",
      scope: "link",
      linkId: "lnk_post",
      reason: "x",
      actor: "a",
      effectiveAt: new Date(),
    });
    const after = await g.app.request("/pb/calls/next", { headers: { cookie: session } });
    expect([after.status, await errorCode(after)]).toEqual([403, "revoked"]);
  });

  it("Secure cookie behind HTTPS", async () => {
    const g = await gatewayFixture();
    const token = await g.issue();
    const res = await g.app.request(`/l/${token}`, {
      method: "POST",
      headers: { "x-forwarded-proto": "https" },
    });
    expect(res.headers.get("set-cookie")).toMatch(/Secure/);
  });

  it("Secure cookie behind HTTPS as any proxy spells it: the client's hop first (https, http), any case", async () => {
    const g = await gatewayFixture();
    for (const proto of ["https, http", "HTTPS", " https"]) {
      const res = await g.app.request(`/l/${await g.issue()}`, {
        method: "POST",
        headers: { "x-forwarded-proto": proto },
      });
      expect([proto, res.headers.getSetCookie().find((c) => c.startsWith("pl_session="))]).toEqual([
        proto,
        expect.stringMatching(/; Secure/),
      ]);
    }
    const plain = await g.app.request(`/l/${await g.issue()}`, {
      method: "POST",
      headers: { "x-forwarded-proto": "http, https" },
    });
    expect(plain.headers.getSetCookie().find((c) => c.startsWith("pl_session="))).not.toMatch(/Secure/);
  });

  it("behind an HTTPS proxy (X-Forwarded-Proto: https) a form of the gateway's own https page redeems; others' are cross_site", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_tls" });
    const post = (origin: string, proto = "https") =>
      g.app.request(`http://calls.example.org/l/${token}`, {
        method: "POST",
        headers: {
          host: "calls.example.org",
          "x-forwarded-proto": proto,
          origin,
          "sec-fetch-site": "same-origin",
        },
      });
    const own = await post("https://calls.example.org");
    expect(own.status).toBe(303);
    expect(own.headers.getSetCookie().find((c) => c.startsWith("pl_session="))).toMatch(/; Secure/);
    for (const [origin, proto] of [
      ["https://evil.example", "https"],
      ["https://calls.example.org:8443", "https"],
      ["https://calls.example.org", "http"],
      // The same host over plain HTTP: a page anyone on the volunteer's network can serve.
      ["http://calls.example.org", "https"],
    ] as const) {
      const res = await post(origin, proto);
      expect([origin, proto, res.status, await errorCode(res)]).toEqual([origin, proto, 403, "cross_site"]);
    }
    expect(g.links.rows.get("lnk_tls")!.uses).toBe(1);
  });

  it("Secure cookies when the links handed out are https (PUBLIC_GATEWAY_URL), behind a proxy speaking http", async () => {
    const g = await gatewayFixture();
    g.deps.config.publicGatewayUrl = "https://calls.example.org";
    const token = await g.issue();
    const landing = await g.app.request(`http://calls.example.org/l/${token}`);
    expect(landing.headers.getSetCookie().find((c) => c.startsWith("pl_device="))).toMatch(/; Secure/);
    const res = await g.app.request(`http://calls.example.org/l/${token}`, { method: "POST" });
    expect(res.status).toBe(303);
    expect(res.headers.getSetCookie().find((c) => c.startsWith("pl_session="))).toMatch(/; Secure/);
  });

  it("exactly maxUses redemptions succeed under concurrent POSTs", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_race" }, 3);
    // Twelve devices (one device re-opening continues its session), none suspended for it.
    g.deps.config.maxDevicesPerLink = 100;
    const results = await Promise.all(
      Array.from({ length: 12 }, () => g.app.request(`/l/${token}`, { method: "POST" })),
    );
    expect(results.filter((r) => r.status === 303)).toHaveLength(3);
    expect(results.filter((r) => r.status === 403)).toHaveLength(9);
  });
});

describe("proxying", () => {
  it("strips Cookie and Authorization, adds X-Phaselock-* and the gateway secret, strips /pb", async () => {
    const g = await gatewayFixture();
    const token = await g.session({ jti: "lnk_hdr", sub: "vol-7" });
    const res = await g.app.request("/pb/calls/next", {
      headers: {
        authorization: `Bearer ${token}`,
        cookie: "other=1",
        "x-phaselock-campaign": "forged",
        connection: "x-hop",
        "x-hop": "1",
      },
    });
    expect(res.status).toBe(200);
    const seen = g.phonebank.seen[0]!;
    expect(seen.path).toBe("/calls/next");
    expect(seen.headers.get("authorization")).toBeNull();
    expect(seen.headers.get("cookie")).toBeNull();
    expect(seen.headers.get("x-hop")).toBeNull();
    expect(seen.headers.get("x-phaselock-campaign")).toBe("starmer-2020");
    expect(seen.headers.get("x-phaselock-volunteer")).toBe("vol-7");
    expect(seen.headers.get("x-phaselock-link")).toBe("lnk_hdr");
    expect(seen.headers.get("x-phaselock-scopes")).toBe("calls:read calls:write members:read");
    expect(seen.headers.get("x-phaselock-gateway-secret")).toBe(UPSTREAM_SECRET);
  });

  it("minimises member data: fields outside the allow-list never reach the volunteer", async () => {
    const g = await gatewayFixture();
    const token = await g.session();
    for (const path of ["/pb/calls/next", "/pb/members/m_000042"]) {
      const res = await g.bearer(token, path);
      const text = await res.text();
      expect(text).toContain("07700 900123");
      expect(text).not.toContain("alex@example.invalid");
      expect(text).not.toContain("1970-01-01");
      expect(text).not.toContain("Example Street");
    }
  });

  it("refuses a request body over the limit", async () => {
    const g = await gatewayFixture();
    const token = await g.session();
    const res = await g.bearer(token, "/pb/calls/c_1/outcome", {
      method: "POST",
      body: "x".repeat(4096),
      headers: { "content-type": "application/json", "content-length": "4096" },
    });
    expect(res.status).toBe(413);
  });

  it("audits every allowed and denied request with its reason, never the token", async () => {
    const g = await gatewayFixture();
    const token = await g.session({ jti: "lnk_aud" });
    await g.bearer(token);
    await g.bearer(token, "/pb/members/export");
    const access = g.events().filter((e) => e.type === "access");
    expect(access.map((e) => [e.decision, e.reason])).toEqual([
      ["allow", null],
      ["deny", "scope_denied"],
    ]);
    expect(access.every((e) => e.linkId === "lnk_aud")).toBe(true);
    // The scope the route needs: the console counts calls made by it, whatever the path looks like.
    expect(access.map((e) => e.data?.scope)).toEqual(["calls:read", "members:export"]);
    expect(JSON.stringify(g.events())).not.toContain(token);
  });

  it("a browser gets an HTML refusal page", async () => {
    const g = await gatewayFixture();
    const res = await g.get("/pb/calls/next", { accept: "text/html,application/xhtml+xml" });
    expect(res.status).toBe(401);
    expect(res.headers.get("content-type")).toContain("text/html");
    expect(await res.text()).toContain("token_missing");
  });
});

describe("leaked-link signals", () => {
  it("a link redeemed from more devices than MAX_DEVICES_PER_LINK is suspended everywhere", async () => {
    const g = await gatewayFixture();
    g.deps.config.maxDevicesPerLink = 3;
    const token = await g.issue({ jti: "lnk_leak" }, 20);
    const device = async (n: number) => {
      const landing = await g.get(`/l/${token}`);
      const cookie = landing.headers.get("set-cookie")!.split(";")[0]!;
      expect(cookie).toMatch(/^pl_device=dev_/);
      return g.app.request(`/l/${token}`, {
        method: "POST",
        headers: { cookie, "user-agent": `phone-${n}` },
      });
    };
    for (let n = 1; n <= 3; n++) expect((await device(n)).status).toBe(303);
    const fourth = await device(4);
    expect([fourth.status, await errorCode(fourth)]).toEqual([403, "suspended"]);
    expect(g.suspended.has("lnk_leak")).toBe(true);
    expect(g.events().some((e) => e.type === "link.suspended" && e.linkId === "lnk_leak")).toBe(true);
    const bearer = await g.bearer(await g.openSession("lnk_leak"));
    expect([bearer.status, await errorCode(bearer)]).toEqual([403, "suspended"]);
    expect(g.links.rows.get("lnk_leak")!.uses).toBe(3);
  });

  it("without MAX_DEVICES_PER_LINK a link opens on a new device for each of its maxUses, then uses_exhausted", async () => {
    const g = await gatewayFixture();
    expect(g.deps.config.maxDevicesPerLink).toBeUndefined();
    const token = await g.issue({ jti: "lnk_five" }, 5);
    const statuses: number[] = [];
    // No cookie jar: every redemption comes from a device the gateway has not seen.
    for (let n = 1; n <= 6; n++) {
      const res = await g.app.request(`/l/${token}`, {
        method: "POST",
        headers: { accept: "application/json" },
      });
      statuses.push(res.status);
      if (n === 6) expect(await errorCode(res)).toBe("uses_exhausted");
    }
    expect(statuses).toEqual([201, 201, 201, 201, 201, 403]);
    expect(g.suspended.has("lnk_five")).toBe(false);
    expect(g.links.rows.get("lnk_five")!.uses).toBe(5);
  });

  it("the same device redeeming again is not a new device", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_same" }, 20);
    const cookie = (await g.get(`/l/${token}`)).headers.get("set-cookie")!.split(";")[0]!;
    for (let i = 0; i < 6; i++) {
      expect((await g.app.request(`/l/${token}`, { method: "POST", headers: { cookie } })).status).toBe(303);
    }
  });
});

describe("documentation", () => {
  it("serves an OpenAPI document naming every route and refusal code", async () => {
    const g = await gatewayFixture();
    const doc = (await (await g.get("/openapi.json")).json()) as {
      openapi: string;
      paths: Record<string, unknown>;
    };
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(["/l/{token}", "/pb/{path}", "/readyz"]));
    expect(JSON.stringify(doc)).toContain("phase_closed");
  });
});

describe("the OpenAPI document says what each route answers", () => {
  type Responses = Record<string, { description?: string }>;
  type Doc = { paths: Record<string, Record<string, { responses?: Responses }>> };
  const docOf = async (g: Awaited<ReturnType<typeof gatewayFixture>>) =>
    (await (await g.get("/openapi.json")).json()) as Doc;
  /** Hono's pattern as the document writes it: `:token` is `{token}`, `/pb/*` is `/pb/{path}`. */
  const templateOf = (path: string) => path.replace(/:([A-Za-z]+)/g, "{$1}").replace(/\/\*$/, "/{path}");

  it("documents every route the app registers", async () => {
    const g = await gatewayFixture();
    const doc = await docOf(g);
    const missing = g.app.routes
      .filter((r) => r.path !== "/*") // the middleware
      // `/l/*` answers a mangled link (`/l/<code>/x`) as `/l/{token}` answers a bad one: 401 token_invalid.
      .map((r) => ({ method: r.method, path: r.path === "/l/*" ? "/l/{token}" : templateOf(r.path) }))
      .filter(
        ({ method, path }) =>
          doc.paths[path]?.[method === "ALL" ? "get" : method.toLowerCase()] === undefined,
      )
      .map(({ method, path }) => `${method} ${path}`);
    expect(missing).toEqual([]);
  });

  it("lists the status of every answer, and names its refusal code", async () => {
    const notFound = fakePhonebank();
    const phonebank = { app: new Hono(), seen: notFound.seen };
    phonebank.app.get("/members/m_404", (c) => c.json({ error: "no such member" }, 404));
    phonebank.app.route("/", notFound.app);
    const g = await gatewayFixture({ phonebank });
    const doc = await docOf(g);
    const session = await g.session();
    const link = await g.issue();
    const down = async () => {
      throw new Error("connection refused");
    };
    const cases: { route: string; path: string; init?: RequestInit; before?: () => void }[] = [
      {
        route: "GET /pb/{path}",
        path: "/pb/members/m_404",
        init: { headers: { authorization: `Bearer ${session}` } },
      },
      {
        route: "OPTIONS /pb/{path}",
        path: "/pb/calls/next",
        init: { method: "OPTIONS", headers: { authorization: `Bearer ${session}` } },
      },
      { route: "GET /pb", path: "/pb" },
      {
        route: "POST /pb/_phaselock/session/end",
        path: "/pb/_phaselock/session/end",
        init: { method: "POST", headers: { authorization: `Bearer ${link}` } },
      },
      {
        route: "POST /pb/_phaselock/session/end",
        path: "/pb/_phaselock/session/end",
        init: { method: "POST", headers: { authorization: `Bearer ${session}` } },
        before: () => {
          g.deps.sessions.resolve = down;
        },
      },
      {
        route: "GET /l/{token}",
        path: `/l/${link}`,
        before: () => {
          g.links.get = down;
        },
      },
      { route: "GET /l/{token}", path: `/l/${link}`, before: () => g.setFresh(false) },
    ];
    const undocumented: string[] = [];
    for (const { route, path, init, before } of cases) {
      before?.();
      const res = await g.app.request(path, init);
      const [method, template] = route.split(" ") as [string, string];
      const responses = doc.paths[template]?.[method.toLowerCase()]?.responses ?? {};
      const status = String(res.status);
      const entry = responses[status] ?? responses[`${status[0]}XX`] ?? responses.default;
      const code =
        res.status >= 400 && res.headers.get("content-type")?.includes("json")
          ? await errorCode(res).catch(() => null)
          : null;
      if (!entry) undocumented.push(`${route} ${status}`);
      else if (code && !entry.description?.includes(code)) undocumented.push(`${route} ${status} ${code}`);
    }
    expect(undocumented).toEqual([]);
  });
});

describe("failing closed on infrastructure errors", () => {
  it("a database error during redemption or on the landing page answers 503 unavailable, not 500", async () => {
    const g = await gatewayFixture();
    const token = await g.issue();
    g.links.get = async () => {
      throw new Error("connection refused");
    };
    g.links.redeem = async () => {
      throw new Error("connection refused");
    };
    for (const method of ["GET", "POST"]) {
      const res = await g.app.request(`/l/${token}`, { method });
      expect([method, res.status, await errorCode(res)]).toEqual([method, 503, "unavailable"]);
      expect(res.headers.get("retry-after")).not.toBeNull();
    }
    const page = await g.app.request(`/l/${token}`, { method: "POST", headers: { accept: "text/html" } });
    expect(page.status).toBe(503);
    expect(page.headers.get("content-type")).toContain("text/html");
  });
});
