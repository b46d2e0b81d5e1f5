import { sha256Hex } from "@phaselock/core";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_BATCH_BODY_BYTES } from "../app.ts";
import {
  call,
  callJson,
  createHarness,
  createKey,
  decodePart,
  GATEWAY,
  type Harness,
  ISSUER,
  seedContest,
  seedOpen,
  T0,
  verifierFor,
} from "../test-support.ts";

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, 60_000);
afterAll(() => h.close());

const DAY = 86_400;
const t0s = Date.parse(T0) / 1000;

interface Issued {
  id: string;
  url: string;
  token: string;
  notBefore: string;
  expiresAt: string;
}

async function issue(body: Record<string, unknown>, token?: string) {
  return callJson<Issued & Record<string, unknown>>(h, "POST", "/v1/links", {
    body,
    ...(token !== undefined ? { token } : {}),
  });
}

async function linkCount(campaignId: string): Promise<number> {
  let n = 0;
  let cursor: string | null = null;
  do {
    const q: string = `/v1/links?campaignId=${campaignId}&limit=500${cursor ? `&cursor=${cursor}` : ""}`;
    const { body } = await callJson<{ items: unknown[]; nextCursor: string | null }>(h, "GET", q);
    n += body.items.length;
    cursor = body.nextCursor;
  } while (cursor);
  return n;
}

describe("POST /v1/links", () => {
  it("issues a signed link for the current phase", async () => {
    const { campaignId, contestId } = await seedOpen(h);
    const { status, body, res } = await issue({
      campaignId,
      phase: "open",
      volunteer: { ref: "vol-1", name: "Ann" },
      scopes: ["calls:read", "calls:write"],
    });
    expect(status).toBe(201);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect(Object.keys(body).sort()).toEqual(["expiresAt", "id", "notBefore", "token", "url"]);
    expect(body.id).toMatch(/^lnk_/);
    // A short link (SMS-sized): 128 random bits in 22 characters; only its hash is stored.
    expect(body.url).toMatch(new RegExp(`^${GATEWAY}/l/[A-Za-z0-9_-]{22}$`));
    const code = body.url.slice(`${GATEWAY}/l/`.length);
    expect(code.length).toBeLessThanOrEqual(32);
    const stored = await h.deps.db.execute(sql`select * from links where id = ${body.id}`);
    const row = (Array.isArray(stored) ? stored : (stored as { rows: unknown[] }).rows)[0] as Record<
      string,
      unknown
    >;
    expect(JSON.stringify(row)).not.toContain(code);
    expect(row.code_hash).toBe(sha256Hex(code));
    expect(body.notBefore).toBe(T0);
    // Default TTL: 7 days.
    expect(body.expiresAt).toBe(new Date((t0s + 7 * DAY) * 1000).toISOString());

    const header = decodePart(body.token, 0);
    expect(header).toEqual({ alg: "EdDSA", typ: "pbl+jwt", kid: h.keys.signer().kid });
    const verified = await (await verifierFor(h)).verify(body.token);
    expect(verified).toEqual({
      ok: true,
      claims: {
        iss: ISSUER,
        aud: "phaselock-gateway",
        sub: "vol-1",
        jti: body.id,
        iat: t0s,
        nbf: t0s,
        exp: t0s + 7 * DAY,
        cmp: campaignId,
        cst: contestId,
        phs: "open",
        scp: ["calls:read", "calls:write"],
      },
    });
  });

  it("records a link.issued audit event without the token", async () => {
    const { campaignId } = await seedOpen(h);
    const { body } = await issue({
      campaignId,
      phase: "open",
      volunteer: { ref: "vol-a" },
      scopes: ["calls:read"],
    });
    const event = h.audit.events.find((e) => e.type === "link.issued" && e.linkId === body.id);
    expect(event).toMatchObject({ actor: "admin", campaignId, decision: "allow" });
    // A single link's event carries its terms itself (a batch's links share its event's).
    expect(event?.data).toMatchObject({
      volunteerRef: "vol-a",
      phase: "open",
      scopes: ["calls:read"],
      expiresAt: body.expiresAt,
      maxUses: 5,
    });
    expect(event?.data).not.toHaveProperty("batchId");
    expect(JSON.stringify(h.audit.events)).not.toContain(body.token);
  });

  it("clamps expiry to the phase end", async () => {
    const { campaignId, phaseEndsAt } = await seedOpen(h);
    const { status, body } = await issue({
      campaignId,
      phase: "open",
      volunteer: { ref: "vol-2" },
      scopes: ["calls:read"],
      ttlSeconds: 90 * DAY,
    });
    expect(status).toBe(201);
    expect(body.expiresAt).toBe(phaseEndsAt);
    expect(decodePart(body.token, 1).exp).toBe(Date.parse(phaseEndsAt) / 1000);
  });

  it("issues ahead for a later phase: notBefore is the phase start, TTL counted from it", async () => {
    const { campaignId, phases } = await seedContest(h);
    const ballot = phases[2]!;
    const { status, body } = await issue({
      campaignId,
      phase: "ballot",
      volunteer: { ref: "vol-3" },
      scopes: ["members:read"],
      ttlSeconds: DAY,
    });
    expect(status).toBe(201);
    expect(body.notBefore).toBe(ballot.startsAt);
    expect(Date.parse(body.expiresAt) - Date.parse(ballot.startsAt)).toBe(DAY * 1000);
    const claims = decodePart(body.token, 1);
    expect(claims.nbf).toBe(Date.parse(ballot.startsAt) / 1000);
    expect(claims.iat).toBe(t0s);
  });

  it("lets a coordinator issue for its own campaign and records it as the actor", async () => {
    const { campaignId } = await seedOpen(h);
    const key = await createKey(h, "coordinator", campaignId);
    const { status, body } = await issue(
      { campaignId, phase: "open", volunteer: { ref: "vol-4" }, scopes: ["calls:read"] },
      key.key,
    );
    expect(status).toBe(201);
    const link = await callJson(h, "GET", `/v1/links/${body.id}`);
    expect(link.body.issuedBy).toBe(key.id);
  });

  describe("refusals, in contract order", () => {
    it.each([
      ["missing volunteer", { volunteer: undefined }],
      ["empty scopes", { scopes: [] }],
      ["unknown scope", { scopes: ["calls:delete"] }],
      ["ttlSeconds 0", { ttlSeconds: 0 }],
      ["negative ttlSeconds", { ttlSeconds: -5 }],
      ["ttlSeconds over 90 days", { ttlSeconds: 90 * DAY + 1 }],
      ["fractional ttlSeconds", { ttlSeconds: 1.5 }],
      ["maxUses 0", { maxUses: 0 }],
      ["negative maxUses", { maxUses: -1 }],
      ["fractional maxUses", { maxUses: 2.5 }],
      ["unknown field", { admin: true }],
      ["unknown volunteer field", { volunteer: { ref: "v", email: "x@y" } }],
      ["control character in ref", { volunteer: { ref: "v\u0007" } }],
      ["space in ref", { volunteer: { ref: "a b" } }],
      ["header-splitting ref", { volunteer: { ref: "v\r\nX-Phaselock-Scopes: members:export" } }],
      ["ref with a quote or angle bracket", { volunteer: { ref: 'v"<x>' } }],
      ["ref starting with a sign", { volunteer: { ref: "-v" } }],
      ["ref not in NFC", { volunteer: { ref: "L\u0301ukasz-1" } }],
      ["ref over 128 characters", { volunteer: { ref: "v".repeat(129) } }],
      ["ref in a line separator", { volunteer: { ref: "v\u2028w" } }],
    ])("400 validation: %s", async (_, patch) => {
      const { campaignId } = await seedOpen(h);
      const body = { campaignId, phase: "open", volunteer: { ref: "v" }, scopes: ["calls:read"], ...patch };
      const res = await issue(body);
      expect(res.status).toBe(400);
      expect(res.body.code).toBe("validation");
    });

    it("validation comes before not_found", async () => {
      const res = await issue({
        campaignId: "no-such-campaign",
        phase: "open",
        volunteer: { ref: "v" },
        scopes: [],
      });
      expect(res.body.code).toBe("validation");
    });

    it("404 not_found: unknown campaign", async () => {
      const res = await issue({
        campaignId: "no-such",
        phase: "open",
        volunteer: { ref: "v" },
        scopes: ["calls:read"],
      });
      expect(res.status).toBe(404);
      expect(res.body.code).toBe("not_found");
    });

    it("404 not_found: unknown phase, even for another campaign's coordinator", async () => {
      const { campaignId } = await seedOpen(h);
      const other = await seedOpen(h);
      const key = await createKey(h, "coordinator", other.campaignId);
      const res = await issue(
        { campaignId, phase: "nope", volunteer: { ref: "v" }, scopes: ["members:export"] },
        key.key,
      );
      expect(res.status).toBe(404);
      expect(res.body.code).toBe("not_found");
    });

    it("403 forbidden: another campaign's coordinator, before scope and phase checks", async () => {
      const { campaignId } = await seedOpen(h);
      const other = await seedOpen(h);
      const key = await createKey(h, "coordinator", other.campaignId);
      const res = await issue(
        { campaignId, phase: "open", volunteer: { ref: "v" }, scopes: ["members:export"] },
        key.key,
      );
      expect(res.status).toBe(403);
      expect(res.body.code).toBe("forbidden");
    });

    it("403 forbidden: the auditor role", async () => {
      const { campaignId } = await seedOpen(h);
      const key = await createKey(h, "auditor");
      const res = await issue(
        { campaignId, phase: "open", volunteer: { ref: "v" }, scopes: ["calls:read"] },
        key.key,
      );
      expect(res.status).toBe(403);
      expect(res.body.code).toBe("forbidden");
    });

    it("422 scope_not_issuable: members:export, even when entitled", async () => {
      const { campaignId } = await seedOpen(h, { entitled: ["calls:read", "members:export"] });
      const res = await issue({
        campaignId,
        phase: "open",
        volunteer: { ref: "v" },
        scopes: ["members:export"],
      });
      expect(res.status).toBe(422);
      expect(res.body.code).toBe("scope_not_issuable");
    });

    it("409 phase_closed: the phase has ended (before not_entitled)", async () => {
      const { campaignId } = await seedContest(h, { entitled: ["calls:read"] });
      const res = await issue({
        campaignId,
        phase: "campaign",
        volunteer: { ref: "v" },
        scopes: ["members:read"],
      });
      expect(res.status).toBe(409);
      expect(res.body.code).toBe("phase_closed");
    });

    it("403 not_entitled: the phase has memberData false", async () => {
      const { campaignId } = await seedContest(h);
      const res = await issue({
        campaignId,
        phase: "nominations",
        volunteer: { ref: "v" },
        scopes: ["calls:read"],
      });
      expect(res.status).toBe(403);
      expect(res.body.code).toBe("not_entitled");
    });

    it("403 not_entitled: a scope outside the entitlement", async () => {
      const { campaignId } = await seedOpen(h, { entitled: ["calls:read"] });
      const res = await issue({
        campaignId,
        phase: "open",
        volunteer: { ref: "v" },
        scopes: ["calls:read", "members:read"],
      });
      expect(res.status).toBe(403);
      expect(res.body.code).toBe("not_entitled");
    });

    it("403 not_entitled: no entitlement at all in that phase", async () => {
      const { campaignId } = await seedOpen(h);
      await call(h, "DELETE", `/v1/campaigns/${campaignId}/entitlements/open`);
      const res = await issue({ campaignId, phase: "open", volunteer: { ref: "v" }, scopes: ["calls:read"] });
      expect(res.status).toBe(403);
      expect(res.body.code).toBe("not_entitled");
    });

    it("401 without a token, before anything else", async () => {
      const res = await issue({}, null as unknown as string);
      expect(res.status).toBe(401);
      expect(res.body.code).toBe("unauthorized");
    });
  });
});

describe("POST /v1/links/batch", () => {
  const volunteers = (n: number, prefix = "vol") =>
    Array.from({ length: n }, (_, i) => ({ ref: `${prefix}-${i}`, name: `Volunteer ${i}` }));

  it("issues one link per volunteer, each with its ref", async () => {
    const { campaignId } = await seedOpen(h);
    const { status, body } = await callJson<{
      links: (Issued & { volunteer: { ref: string; name: string } })[];
    }>(h, "POST", "/v1/links/batch", {
      body: { campaignId, phase: "open", volunteers: volunteers(3), scopes: ["calls:read"], maxUses: 2 },
    });
    expect(status).toBe(201);
    expect(body.links.map((l) => l.volunteer.ref)).toEqual(["vol-0", "vol-1", "vol-2"]);
    expect(new Set(body.links.map((l) => l.id)).size).toBe(3);
    const verifier = await verifierFor(h);
    for (const l of body.links) {
      expect(l.url).toMatch(new RegExp(`^${GATEWAY}/l/[A-Za-z0-9_-]{22}$`));
      const v = await verifier.verify(l.token);
      expect(v.ok && v.claims.sub).toBe(l.volunteer.ref);
    }
    const one = await callJson(h, "GET", `/v1/links/${body.links[0]!.id}`);
    expect(one.body).toMatchObject({ maxUses: 2, uses: 0, status: "active" });
    expect(
      h.audit.events.filter((e) => e.type === "link.issued" && e.campaignId === campaignId),
    ).toHaveLength(3);
    expect(
      h.audit.events.filter((e) => e.type === "links.batch_issued" && e.campaignId === campaignId),
    ).toHaveLength(1);
  });

  it("refuses duplicate refs, naming them, and writes nothing", async () => {
    const { campaignId } = await seedOpen(h);
    const list = [...volunteers(5), { ref: "vol-3" }, { ref: "vol-1" }];
    const { status, body } = await callJson<{ code: string; errors: { pointer: string; detail: string }[] }>(
      h,
      "POST",
      "/v1/links/batch",
      { body: { campaignId, phase: "open", volunteers: list, scopes: ["calls:read"] } },
    );
    expect(status).toBe(400);
    expect(body.code).toBe("validation");
    expect(body.errors.map((e) => e.pointer)).toEqual(["#/volunteers/5/ref", "#/volunteers/6/ref"]);
    expect(body.errors.map((e) => e.detail).join(" ")).toContain("vol-3");
    expect(await linkCount(campaignId)).toBe(0);
  });

  it("refuses more than 10,000 volunteers", async () => {
    const { campaignId } = await seedOpen(h);
    const res = await callJson(h, "POST", "/v1/links/batch", {
      body: { campaignId, phase: "open", volunteers: volunteers(10_001), scopes: ["calls:read"] },
    });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("validation");
    expect(await linkCount(campaignId)).toBe(0);
  });

  it("refuses an empty list", async () => {
    const { campaignId } = await seedOpen(h);
    const res = await callJson(h, "POST", "/v1/links/batch", {
      body: { campaignId, phase: "open", volunteers: [], scopes: ["calls:read"] },
    });
    expect(res.body.code).toBe("validation");
  });

  it("applies the issuance checks to the whole batch", async () => {
    const { campaignId } = await seedContest(h);
    const res = await callJson(h, "POST", "/v1/links/batch", {
      body: { campaignId, phase: "nominations", volunteers: volunteers(3), scopes: ["calls:read"] },
    });
    expect(res.status).toBe(403);
    expect(res.body.code).toBe("not_entitled");
    expect(await linkCount(campaignId)).toBe(0);
  });

  it("writes nothing when the transaction fails", async () => {
    const { campaignId } = await seedOpen(h);
    const first = await callJson<{ links: Issued[] }>(h, "POST", "/v1/links/batch", {
      body: { campaignId, phase: "open", volunteers: volunteers(2, "dup"), scopes: ["calls:read"] },
    });
    expect(first.status).toBe(201);
    // Make the second insert of the batch collide on the primary key: ids come from randomId, so
    // wrap insertMany to reuse an existing id for the last row.
    const original = h.deps.repos.links.insertMany;
    h.deps.repos.links.insertMany = (rows, tx) =>
      original([...rows.slice(0, -1), { ...rows.at(-1)!, id: first.body.links[0]!.id }], tx);
    try {
      const res = await callJson(h, "POST", "/v1/links/batch", {
        body: { campaignId, phase: "open", volunteers: volunteers(600, "new"), scopes: ["calls:read"] },
      });
      expect(res.status).toBe(500);
      expect(res.body.code).toBe("internal");
    } finally {
      h.deps.repos.links.insertMany = original;
    }
    expect(await linkCount(campaignId)).toBe(2);
  });

  it("answers CSV when asked, with a header row and formula cells defused", async () => {
    const { campaignId } = await seedOpen(h);
    const res = await call(h, "POST", "/v1/links/batch", {
      headers: { Accept: "text/csv" },
      body: {
        campaignId,
        phase: "open",
        volunteers: [
          // Refs cannot start with a formula character any more; names still can.
          { ref: "ref-1", name: '=HYPERLINK("http://evil")' },
          { ref: "ref-2", name: '+Smith, "Jo"' },
        ],
        scopes: ["calls:read"],
      },
    });
    expect(res.status).toBe(201);
    expect(res.headers.get("content-type")).toMatch(/^text\/csv/);
    const lines = (await res.text()).trimEnd().split("\r\n");
    expect(lines[0]).toBe("ref,name,id,url,notBefore,expiresAt,status");
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(
      /^ref-1,"'=HYPERLINK\(""http:\/\/evil""\)",lnk_[\w-]+,http:\/\/127\.0\.0\.1:8080\/l\//,
    );
    expect(lines[2]).toMatch(/^ref-2,"'\+Smith, ""Jo""",lnk_/);
    // The short link, SMS-sized: the code after /l/ is 22 characters, no token in the sheet.
    expect(lines[2]).toMatch(/,http:\/\/127\.0\.0\.1:8080\/l\/[A-Za-z0-9_-]{22},/);
  });

  it("prefers JSON when JSON ranks higher than CSV", async () => {
    const { campaignId } = await seedOpen(h);
    const res = await call(h, "POST", "/v1/links/batch", {
      headers: { Accept: "text/csv;q=0.5, application/json" },
      body: { campaignId, phase: "open", volunteers: volunteers(1), scopes: ["calls:read"] },
    });
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  });

  // Throughput (goal: 5,000 links/s) is measured by `pnpm bench`, never asserted in a test.
  it("issues 10,000 links in one request, within the body limit", async () => {
    const { campaignId } = await seedOpen(h);
    // Longest allowed refs and names: the body must still fit.
    const big = Array.from({ length: 10_000 }, (_, i) => ({
      ref: `${String(i).padStart(5, "0")}${"r".repeat(123)}`,
      name: "n".repeat(100),
    }));
    const raw = JSON.stringify({ campaignId, phase: "open", volunteers: big, scopes: ["calls:read"] });
    expect(raw.length).toBeLessThan(MAX_BATCH_BODY_BYTES);
    const res = await call(h, "POST", "/v1/links/batch", { rawBody: raw });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { links: Issued[] };
    expect(body.links).toHaveLength(10_000);
    expect(await linkCount(campaignId)).toBe(10_000);
  }, 60_000);

  it("refuses a body over the batch limit with 413", async () => {
    const res = await callJson(h, "POST", "/v1/links/batch", {
      rawBody: `{"x":"${"y".repeat(MAX_BATCH_BODY_BYTES)}"}`,
    });
    expect(res.status).toBe(413);
    expect(res.body.code).toBe("payload_too_large");
  });
});

describe("GET /v1/links and /v1/links/:id", () => {
  it("lists links issued within one second newest first", async () => {
    const { campaignId } = await seedOpen(h);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const { body } = await issue({
        campaignId,
        phase: "open",
        volunteer: { ref: `s-${i}` },
        scopes: ["calls:read"],
      });
      ids.push(body.id);
      h.clock.advance(10); // milliseconds: every link shares its iat second
    }
    const { body } = await callJson<{ items: { id: string }[] }>(
      h,
      "GET",
      `/v1/links?campaignId=${campaignId}`,
    );
    expect(body.items.map((l) => l.id)).toEqual([...ids].reverse());
  });

  it("filters by status as each item shows it: a phase ended early is expired, spent uses are not active", async () => {
    const { contestId, campaignId } = await seedOpen(h);
    const { body: ended } = await issue({
      campaignId,
      phase: "open",
      volunteer: { ref: "e-1" },
      scopes: ["calls:read"],
    });
    const now = h.clock.now().getTime();
    const phases = [
      {
        name: "open",
        startsAt: new Date(now - 86_400_000).toISOString(),
        endsAt: new Date(now - 1000).toISOString(),
        memberData: true,
      },
      {
        name: "later",
        startsAt: new Date(now).toISOString(),
        endsAt: new Date(now + 86_400_000).toISOString(),
        memberData: true,
      },
    ];
    expect(
      (await callJson(h, "PUT", `/v1/contests/${contestId}`, { body: { name: "Open contest", phases } }))
        .status,
    ).toBe(200);
    const list = async (status: string) =>
      (
        await callJson<{ items: { id: string; status: string }[] }>(
          h,
          "GET",
          `/v1/links?campaignId=${campaignId}&status=${status}`,
        )
      ).body.items;
    expect((await list("expired")).map((l) => [l.id, l.status])).toEqual([[ended.id, "expired"]]);
    expect(await list("active")).toEqual([]);
  });

  it("pages newest first with a cursor", async () => {
    const { campaignId } = await seedOpen(h);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { body } = await issue({
        campaignId,
        phase: "open",
        volunteer: { ref: `p-${i}` },
        scopes: ["calls:read"],
      });
      ids.push(body.id);
      h.clock.advance(1000);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const path: string = `/v1/links?campaignId=${campaignId}&limit=2${cursor ? `&cursor=${cursor}` : ""}`;
      const { status, body } = await callJson<{ items: { id: string }[]; nextCursor: string | null }>(
        h,
        "GET",
        path,
      );
      expect(status).toBe(200);
      expect(body.items.length).toBeLessThanOrEqual(2);
      seen.push(...body.items.map((l) => l.id));
      cursor = body.nextCursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual([...ids].reverse());
  });

  it("filters by volunteer and status", async () => {
    const { campaignId } = await seedOpen(h);
    const a = await issue({ campaignId, phase: "open", volunteer: { ref: "fa" }, scopes: ["calls:read"] });
    await issue({ campaignId, phase: "open", volunteer: { ref: "fb" }, scopes: ["calls:read"] });
    const byVolunteer = await callJson<{ items: { id: string }[] }>(
      h,
      "GET",
      `/v1/links?campaignId=${campaignId}&volunteer=fa`,
    );
    expect(byVolunteer.body.items.map((l) => l.id)).toEqual([a.body.id]);
    await callJson(h, "POST", "/v1/revocations", {
      body: { scope: "link", linkId: a.body.id, reason: "lost phone" },
    });
    const revoked = await callJson<{ items: { id: string; status: string }[] }>(
      h,
      "GET",
      `/v1/links?campaignId=${campaignId}&status=revoked`,
    );
    expect(revoked.body.items).toEqual([expect.objectContaining({ id: a.body.id, status: "revoked" })]);
    const active = await callJson<{ items: { volunteer: { ref: string } }[] }>(
      h,
      "GET",
      `/v1/links?campaignId=${campaignId}&status=active`,
    );
    expect(active.body.items.map((l) => l.volunteer.ref)).toEqual(["fb"]);
  });

  it("lists a link whose signing key was revoked as revoked, never as active, and counts it so", async () => {
    const { campaignId } = await seedOpen(h);
    const signed = await issue({
      campaignId,
      phase: "open",
      volunteer: { ref: "kr-1" },
      scopes: ["calls:read"],
    });
    const leaked = decodePart(signed.body.token, 0).kid as string;
    // The key is revoked while it signs: the service rotates first, and the next link has the new key.
    const revoked = await callJson<{ rotatedTo: string | null }>(h, "POST", `/v1/keys/${leaked}/revoke`, {
      body: { reason: "private key leaked" },
    });
    expect(revoked.status).toBe(200);
    expect(revoked.body.rotatedTo).toBeTruthy();
    h.clock.advance(1000);
    const fresh = await issue({
      campaignId,
      phase: "open",
      volunteer: { ref: "kr-2" },
      scopes: ["calls:read"],
    });
    expect(decodePart(fresh.body.token, 0).kid).toBe(revoked.body.rotatedTo);

    const list = async (query: string) =>
      (
        await callJson<{ items: { id: string; status: string }[] }>(
          h,
          "GET",
          `/v1/links?campaignId=${campaignId}${query}`,
        )
      ).body.items.map((l) => [l.id, l.status]);
    expect(await list("")).toEqual([
      [fresh.body.id, "active"],
      [signed.body.id, "revoked"],
    ]);
    expect(await list("&status=active")).toEqual([[fresh.body.id, "active"]]);
    expect(await list("&status=revoked")).toEqual([[signed.body.id, "revoked"]]);
    expect(await list("&status=expired")).toEqual([]);
    const one = await callJson(h, "GET", `/v1/links/${signed.body.id}`);
    expect(one.body).toMatchObject({ status: "revoked", kid: leaked, activeSessions: 0 });
    const campaign = await callJson(h, "GET", `/v1/campaigns/${campaignId}`);
    expect(campaign.body.links).toEqual({ active: 1, revoked: 1, expired: 0, suspended: 0, exhausted: 0 });
  });

  it("refuses a bad limit, status or cursor", async () => {
    for (const q of ["limit=0", "limit=501", "limit=abc", "status=gone", "cursor=!!!", "cursor=bm9wZQ"]) {
      const res = await callJson(h, "GET", `/v1/links?${q}`);
      expect(res.status, q).toBe(400);
      expect(res.body.code, q).toBe("validation");
    }
  });

  it("a coordinator sees only its campaign; asking for another is 403", async () => {
    const mine = await seedOpen(h);
    const theirs = await seedOpen(h);
    await issue({
      campaignId: mine.campaignId,
      phase: "open",
      volunteer: { ref: "m" },
      scopes: ["calls:read"],
    });
    const other = await issue({
      campaignId: theirs.campaignId,
      phase: "open",
      volunteer: { ref: "t" },
      scopes: ["calls:read"],
    });
    const key = await createKey(h, "coordinator", mine.campaignId);
    const list = await callJson<{ items: { campaignId: string }[] }>(h, "GET", "/v1/links", {
      token: key.key,
    });
    expect(list.status).toBe(200);
    expect(list.body.items.length).toBeGreaterThan(0);
    expect(list.body.items.every((l) => l.campaignId === mine.campaignId)).toBe(true);
    const forbidden = await callJson(h, "GET", `/v1/links?campaignId=${theirs.campaignId}`, {
      token: key.key,
    });
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.code).toBe("forbidden");
    // Another campaign's link is answered as if it did not exist.
    const hidden = await callJson(h, "GET", `/v1/links/${other.body.id}`, { token: key.key });
    expect(hidden.status).toBe(404);
    expect(hidden.body.code).toBe("not_found");
  });

  it("the auditor may not read links", async () => {
    const key = await createKey(h, "auditor");
    const res = await callJson(h, "GET", "/v1/links", { token: key.key });
    expect(res.status).toBe(403);
  });

  it("shows status, uses and last seen", async () => {
    const { campaignId } = await seedOpen(h);
    const { body } = await issue({
      campaignId,
      phase: "open",
      volunteer: { ref: "s-1", name: "Sam" },
      scopes: ["calls:read"],
      maxUses: 1,
    });
    const got = await callJson(h, "GET", `/v1/links/${body.id}`);
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({
      id: body.id,
      campaignId,
      phase: "open",
      volunteer: { ref: "s-1", name: "Sam" },
      scopes: ["calls:read"],
      status: "active",
      uses: 0,
      maxUses: 1,
      lastSeenAt: null,
      notBefore: body.notBefore,
      expiresAt: body.expiresAt,
    });
    await h.deps.repos.links.redeem(body.id, h.clock.now());
    const used = await callJson(h, "GET", `/v1/links/${body.id}`);
    expect(used.body).toMatchObject({
      status: "exhausted",
      uses: 1,
      lastSeenAt: h.clock.now().toISOString(),
    });
  });

  it("is expired past expiresAt", async () => {
    const { campaignId } = await seedOpen(h);
    const { body } = await issue({
      campaignId,
      phase: "open",
      volunteer: { ref: "e" },
      scopes: ["calls:read"],
      ttlSeconds: 60,
    });
    h.clock.advance(61_000);
    const got = await callJson(h, "GET", `/v1/links/${body.id}`);
    expect(got.body.status).toBe("expired");
  });

  it("is expired at once when the timeline is replaced so that its phase ends early", async () => {
    const { campaignId, contestId } = await seedOpen(h);
    const { body } = await issue({
      campaignId,
      phase: "open",
      volunteer: { ref: "x" },
      scopes: ["calls:read"],
    });
    const now = h.clock.now().getTime();
    await callJson(h, "PUT", `/v1/contests/${contestId}`, {
      body: {
        name: "Open contest",
        phases: [
          {
            name: "open",
            startsAt: new Date(now - 86_400_000).toISOString(),
            endsAt: new Date(now - 1000).toISOString(),
            memberData: true,
          },
        ],
      },
    });
    const got = await callJson(h, "GET", `/v1/links/${body.id}`);
    expect(got.body.status).toBe("expired");
  });

  it("is suspended when suspended", async () => {
    const { campaignId } = await seedOpen(h);
    const { body } = await issue({
      campaignId,
      phase: "open",
      volunteer: { ref: "su" },
      scopes: ["calls:read"],
    });
    await h.deps.repos.links.suspend(body.id, "too many devices", h.clock.now());
    const got = await callJson(h, "GET", `/v1/links/${body.id}`);
    expect(got.body).toMatchObject({ status: "suspended", suspendedReason: "too many devices" });
  });

  it("answers 404 for an unknown link and 400 for a malformed id", async () => {
    expect((await callJson(h, "GET", "/v1/links/lnk_nope")).body.code).toBe("not_found");
    expect((await callJson(h, "GET", `/v1/links/${"x".repeat(101)}`)).body.code).toBe("validation");
  });
});

describe("volunteer refs: letters and digits of any script and . _ @ + - ', in NFC", () => {
  const refs = [
    "Łukasz-1",
    "ada.lovelace+pb@example.org",
    "O'Brien_2",
    "000123",
    "李小龍",
    "नमस्ते", // Devanagari: combining vowel signs after letters
    "Zoë",
  ];

  it.each(refs)("issues a link for %s, carried unchanged as sub", async (ref) => {
    const { campaignId } = await seedOpen(h);
    const res = await issue({ campaignId, phase: "open", volunteer: { ref }, scopes: ["calls:read"] });
    expect(res.status).toBe(201);
    expect(decodePart(res.body.token, 1).sub).toBe(ref);
  });

  it("refuses a batch with a bad ref, pointing at that volunteer, and writes nothing", async () => {
    const { campaignId } = await seedOpen(h);
    const list = [{ ref: "ok-1" }, { ref: "Łukasz-1" }, { ref: "bad ref" }, { ref: "L\u0301ukasz" }];
    const { status, body } = await callJson<{ code: string; errors: { pointer: string }[] }>(
      h,
      "POST",
      "/v1/links/batch",
      { body: { campaignId, phase: "open", volunteers: list, scopes: ["calls:read"] } },
    );
    expect([status, body.code]).toEqual([400, "validation"]);
    expect(body.errors.map((e) => e.pointer)).toEqual(["#/volunteers/2/ref", "#/volunteers/3/ref"]);
    expect(await linkCount(campaignId)).toBe(0);
  });

  it("still finds and revokes links by a ref of the looser rule they may have been issued under", async () => {
    const { campaignId } = await seedOpen(h);
    const list = await callJson(
      h,
      "GET",
      `/v1/links?campaignId=${campaignId}&volunteer=${encodeURIComponent("old ref")}`,
    );
    expect(list.status).toBe(200);
    const revoked = await callJson(h, "POST", "/v1/revocations", {
      body: { scope: "volunteer", volunteerRef: "old ref", campaignId, reason: "left" },
    });
    expect(revoked.status).toBe(201);
  });
});
