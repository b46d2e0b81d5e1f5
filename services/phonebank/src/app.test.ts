import { FakeClock } from "@phaselock/core";
import { cspHash, FALLBACK_CONTACT, VOLUNTEER_STYLE } from "@phaselock/ui";
import { describe, expect, it } from "vitest";
import { createApp } from "./app.ts";
import { createMemberDirectory } from "./members.ts";
import { contactHeader } from "./middleware/gateway.ts";
import { PAGE_CSP } from "./routes/page.ts";

const SECRET = "test-gateway-secret-0123456789abcdef";

function setup(opts: { count?: number } = {}) {
  const clock = new FakeClock("2020-03-01T12:00:00Z");
  const app = createApp({
    secret: SECRET,
    clock,
    members: opts.count === undefined ? undefined : createMemberDirectory({ count: opts.count }),
  });
  const send = (
    path: string,
    init: RequestInit & { campaign?: string | null; secret?: string | null } = {},
  ) => {
    const headers = new Headers(init.headers);
    const secret = init.secret === undefined ? SECRET : init.secret;
    if (secret !== null) headers.set("x-phaselock-gateway-secret", secret);
    const campaign = init.campaign === undefined ? "starmer-2020" : init.campaign;
    if (campaign !== null) headers.set("x-phaselock-campaign", campaign);
    headers.set("x-phaselock-volunteer", "vol-1");
    headers.set("x-phaselock-link", "lnk_1");
    headers.set("x-phaselock-scopes", "calls:read calls:write");
    return app.request(path, { ...init, headers });
  };
  return { app, clock, send };
}

type CallBody = { call: { id: string; member: Record<string, string> } };
type ErrorBody = { error: { code: string; message: string } };

const postOutcome = (send: ReturnType<typeof setup>["send"], id: string, body: unknown, campaign?: string) =>
  send(`/calls/${id}/outcome`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    campaign,
  });

describe("gateway secret", () => {
  const routes: [string, string][] = [
    ["GET", "/"],
    ["GET", "/calls/next"],
    ["POST", "/calls/c_x/outcome"],
    ["GET", "/members/m_000001"],
    ["GET", "/members/export"],
    ["GET", "/no-such-route"],
  ];

  it.each(routes)("%s %s without the secret → 401 gateway_required", async (method, path) => {
    const { send } = setup();
    const res = await send(path, { method, secret: null });
    expect(res.status).toBe(401);
    expect(((await res.json()) as ErrorBody).error.code).toBe("gateway_required");
  });

  it.each(routes)("%s %s with a wrong secret → 401 gateway_required", async (method, path) => {
    const { send } = setup();
    for (const wrong of ["", "wrong", `${SECRET}x`, SECRET.slice(0, -1), SECRET.toUpperCase()]) {
      const res = await send(path, { method, secret: wrong });
      expect(res.status).toBe(401);
      expect(((await res.json()) as ErrorBody).error.code).toBe("gateway_required");
    }
  });

  it("answers with the right secret", async () => {
    const { send } = setup();
    expect((await send("/")).status).toBe(200);
    expect((await send("/calls/next")).status).toBe(200);
    expect((await send("/members/m_000001")).status).toBe(200);
  });

  it.each(["/healthz", "/readyz"])("serves %s without the secret", async (path) => {
    const { app } = setup();
    const res = await app.request(path);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true });
  });

  it("refuses an empty configured secret", () => {
    expect(() => createApp({ secret: "" })).toThrow();
  });
});

describe("GET /calls/next", () => {
  it("hands out members round-robin, one cursor per campaign", async () => {
    const { send } = setup({ count: 3 });
    const next = async (campaign: string) => {
      const res = await send("/calls/next", { campaign });
      expect(res.status).toBe(200);
      return (await res.json()) as CallBody;
    };
    const a = [];
    for (let i = 0; i < 4; i++) a.push((await next("starmer-2020")).call.member.id);
    expect(a).toEqual(["m_000001", "m_000002", "m_000003", "m_000001"]);
    // Another campaign starts from the beginning, and does not move the first one's cursor.
    expect((await next("long-bailey-2020")).call.member.id).toBe("m_000001");
    expect((await next("starmer-2020")).call.member.id).toBe("m_000002");
  });

  it("returns a call id and the full member", async () => {
    const { send } = setup();
    const body = (await (await send("/calls/next")).json()) as CallBody;
    expect(body.call.id).toMatch(/^c_[A-Za-z0-9_-]+$/);
    expect(Object.keys(body.call.member).sort()).toEqual(
      [
        "address",
        "constituency",
        "dateOfBirth",
        "email",
        "id",
        "membershipNumber",
        "name",
        "notes",
        "phone",
        "ward",
      ].sort(),
    );
    const again = (await (await send("/calls/next")).json()) as CallBody;
    expect(again.call.id).not.toBe(body.call.id);
  });

  it("needs the campaign header", async () => {
    const { send } = setup();
    const res = await send("/calls/next", { campaign: null });
    expect(res.status).toBe(400);
    expect(((await res.json()) as ErrorBody).error.code).toBe("campaign_required");
  });
});

describe("POST /calls/:id/outcome", () => {
  async function newCall(send: ReturnType<typeof setup>["send"]) {
    return ((await (await send("/calls/next")).json()) as CallBody).call;
  }

  it("records an outcome: 201", async () => {
    const { send } = setup();
    const call = await newCall(send);
    const res = await postOutcome(send, call.id, { outcome: "answered", notes: "Will vote." });
    expect(res.status).toBe(201);
    expect(await res.json()).toEqual({
      call: {
        id: call.id,
        memberId: call.member.id,
        outcome: "answered",
        notes: "Will vote.",
        recordedAt: "2020-03-01T12:00:00.000Z",
      },
    });
  });

  it.each(["answered", "no_answer", "refused", "wrong_number"])(
    "accepts %s without notes",
    async (outcome) => {
      const { send } = setup();
      const call = await newCall(send);
      expect((await postOutcome(send, call.id, { outcome })).status).toBe(201);
    },
  );

  it.each<[string, unknown]>([
    ["unknown outcome", { outcome: "maybe" }],
    ["missing outcome", { notes: "x" }],
    ["outcome of wrong type", { outcome: 1 }],
    ["notes of wrong type", { outcome: "answered", notes: 5 }],
    ["notes too long", { outcome: "answered", notes: "x".repeat(1001) }],
    ["extra field", { outcome: "answered", memberId: "m_000002" }],
    ["an array", [{ outcome: "answered" }]],
    ["null", null],
    ["not JSON", "outcome=answered"],
    ["empty body", ""],
  ])("refuses %s with 400 validation", async (_name, body) => {
    const { send } = setup();
    const call = await newCall(send);
    const res = await postOutcome(send, call.id, body);
    expect(res.status).toBe(400);
    expect(((await res.json()) as ErrorBody).error.code).toBe("validation");
  });

  it("refuses an oversized body with 413", async () => {
    const { send } = setup();
    const call = await newCall(send);
    const res = await postOutcome(send, call.id, { outcome: "answered", notes: "x".repeat(20_000) });
    expect(res.status).toBe(413);
  });

  it("404s an unknown call and another campaign's call", async () => {
    const { send } = setup();
    const call = await newCall(send);
    expect((await postOutcome(send, "c_unknown", { outcome: "answered" })).status).toBe(404);
    const other = await postOutcome(send, call.id, { outcome: "answered" }, "long-bailey-2020");
    expect(other.status).toBe(404);
    expect(((await other.json()) as ErrorBody).error.code).toBe("not_found");
  });

  it("records an outcome once: 409 after", async () => {
    const { send } = setup();
    const call = await newCall(send);
    expect((await postOutcome(send, call.id, { outcome: "no_answer" })).status).toBe(201);
    const again = await postOutcome(send, call.id, { outcome: "answered" });
    expect(again.status).toBe(409);
    expect(((await again.json()) as ErrorBody).error.code).toBe("conflict");
  });
});

describe("GET /members/:id", () => {
  it("returns the full member", async () => {
    const { send } = setup();
    const res = await send("/members/m_000123");
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    const m = (await res.json()) as Record<string, string>;
    expect(m.id).toBe("m_000123");
    expect(m).toHaveProperty("dateOfBirth");
    expect(m).toHaveProperty("membershipNumber");
  });

  it.each(["m_999999", "m_050001", "m_000000", "nobody", "M_000001", "Export"])("404s %s", async (id) => {
    const { send } = setup();
    const res = await send(`/members/${id}`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as ErrorBody).error.code).toBe("not_found");
  });
});

describe("GET /members/export", () => {
  it("streams every member as NDJSON (at least 50,000 lines)", async () => {
    const { send } = setup();
    const res = await send("/members/export");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^application\/x-ndjson/);

    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let lines = 0;
    let chunks = 0;
    let rest = "";
    let first: string | undefined;
    let last = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks++;
      const parts = (rest + value).split("\n");
      rest = parts.pop()!;
      for (const line of parts) {
        first ??= line;
        last = line;
        lines++;
      }
    }
    expect(rest).toBe("");
    expect(lines).toBeGreaterThanOrEqual(50_000);
    expect(chunks).toBeGreaterThan(1); // produced in pieces, not one buffer
    expect((JSON.parse(first!) as { id: string }).id).toBe("m_000001");
    expect((JSON.parse(last) as { id: string }).id).toBe("m_050000");
  });
});

describe("GET / (calling page)", () => {
  it("is a self-contained page with a Next call button and a strict CSP", async () => {
    const { send } = setup();
    const res = await send("/");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(res.headers.get("content-security-policy")).toBe(PAGE_CSP);
    expect(PAGE_CSP).toContain("default-src 'none'");
    const html = await res.text();
    expect(html).toContain("Next call");
    // It offers to end the session: the gateway's route, relative so it stays under /pb/.
    expect(html).toContain('action="_phaselock/session/end"');
    expect(html).toContain('name="viewport"');
    // Relative, so it works under the gateway's /pb/ prefix.
    expect(html).toContain('api("calls/next")');
    expect(html).not.toMatch(/fetch\(\s*["']\//);
    // No external assets.
    expect(html).not.toMatch(/\b(src|href)=["']?(https?:)?\/\//i);
    expect(html).not.toMatch(/<link\b/i);
  });

  it("shares the volunteer pages' stylesheet, allowed by hash with its one script; nothing inline else", async () => {
    const { send } = setup();
    const html = await (await send("/")).text();
    expect(html).toContain(`<style>${VOLUNTEER_STYLE}</style>`);
    expect(PAGE_CSP).toContain(`style-src ${cspHash(VOLUNTEER_STYLE)}`);
    expect(PAGE_CSP).toContain("connect-src 'self'");
    expect(PAGE_CSP).toContain("frame-ancestors 'none'");
    expect(PAGE_CSP).not.toContain("unsafe-inline");
    const scripts = [...html.matchAll(/<script>([\s\S]*?)<\/script>/g)].map((m) => m[1]!);
    expect(scripts).toHaveLength(1);
    expect(PAGE_CSP).toContain(`script-src ${cspHash(scripts[0]!)}`);
    expect(html).not.toMatch(/\son[a-z]+=/i); // no inline event handlers (the CSP would block them)
    expect(html).not.toMatch(/style=/i);
  });

  it("puts the notes box before the outcome buttons, which save at once, and offers End session", async () => {
    const { send } = setup();
    const html = await (await send("/")).text();
    const notes = html.indexOf('<textarea id="notes"');
    const outcomes = html.indexOf("data-outcome=");
    expect(notes).toBeGreaterThan(0);
    expect(outcomes).toBeGreaterThan(notes);
    expect(html).toContain('<label for="notes">');
    expect(html).toMatch(
      /<form method="post" action="_phaselock\/session\/end"><button type="submit"[^>]*>End session<\/button><\/form>/,
    );
  });

  it("names the campaign's contact (escaped) in its refusal box, else the coordinator who sent the link", async () => {
    const { send } = setup();
    const contact = "Jo <jo@example.org> 100%";
    const named = await (
      await send("/", { headers: { "x-phaselock-contact": encodeURIComponent(contact) } })
    ).text();
    expect(named).toContain("<strong>Jo &#60;jo@example.org&#62; 100%</strong>");
    expect(named).toMatch(/<section id="refused" class="refusal" hidden role="alert"/);
    const unnamed = await (await send("/")).text();
    expect(unnamed).toContain(FALLBACK_CONTACT);
    // The script clears the member from the screen on the gateway's refusals.
    expect(unnamed).toContain("401: ");
    expect(unnamed).toContain("clearMember()");
    // It shows the gateway's words for a volunteer, not its message for API clients.
    expect(unnamed).toContain('fromGateway(res, "phaselock-volunteer-message")');
    expect(unnamed).toContain('fromGateway(res, "phaselock-volunteer-title")');
  });
});

describe("X-Phaselock-Contact", () => {
  it.each([
    ["Sam%20Organiser%2C%20sam%40example.org", "Sam Organiser, sam@example.org"],
    ["Zo%C3%AB%20100%25", "Zoë 100%"],
    ["%20%20", null],
    ["%E0%A4%A", null], // malformed escape
    ["Jo%0ABloggs", null], // a line break
    [encodeURIComponent("a".repeat(201)), null],
    [undefined, null],
  ])("%s → %s", (raw, decoded) => {
    expect(contactHeader(raw)).toBe(decoded);
  });
});
