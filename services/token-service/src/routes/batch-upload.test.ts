import { queryRows } from "@phaselock/db";
import { createTestDatabase, type TestDatabase } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseCsv } from "../csv.ts";
import { ADMIN, call, callJson, createHarness, createKey, type Harness, seedOpen } from "../test-support.ts";

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, 60_000);
afterAll(() => h.close());

type Problem = { code: string; errors?: { in: string; pointer: string; row?: number; index?: number }[] };
type BatchLink = {
  id: string;
  url: string;
  volunteer: { ref: string };
  row?: number;
  index?: number;
  replaces?: string[];
};
type Answer = {
  links: BatchLink[];
  skipped: { ref: string; linkIds: string[]; row?: number; index?: number }[];
};

const query = (campaignId: string, extra = "") =>
  `/v1/links/batch?campaignId=${campaignId}&phase=open&scopes=calls:read,calls:write${extra}`;

function upload(path: string, csv: string, opts: { token?: string; accept?: string; type?: string } = {}) {
  return call(h, "POST", path, {
    rawBody: csv,
    headers: { "Content-Type": opts.type ?? "text/csv", ...(opts.accept ? { Accept: opts.accept } : {}) },
    ...(opts.token ? { token: opts.token } : {}),
  });
}

async function json<T>(res: Response): Promise<{ status: number; body: T }> {
  return { status: res.status, body: (await res.json()) as T };
}

async function linkCount(campaignId: string): Promise<number> {
  const [row] = await queryRows<{ n: number }>(
    h.handle.db,
    sql`select count(*)::int as n from links where campaign_id = ${campaignId}`,
  );
  return row!.n;
}

async function statusOf(id: string): Promise<string> {
  return ((await callJson<{ status: string }>(h, "GET", `/v1/links/${id}`)).body as { status: string })
    .status;
}

const SHEET =
  "ref,name,email,phone\r\nada@example.org,Ada,ada@example.org,07700 900001\r\nbob-2,Bob,bob@example.org,\r\n";

describe("POST /v1/links/batch with Content-Type: text/csv", () => {
  it("issues a link per row, naming each row, and passes other columns through to the CSV answer only", async () => {
    const { campaignId } = await seedOpen(h);
    const res = await json<Answer>(await upload(query(campaignId), SHEET));
    expect(res.status).toBe(201);
    expect(res.body.links.map((l) => [l.volunteer.ref, l.row])).toEqual([
      ["ada@example.org", 2],
      ["bob-2", 3],
    ]);
    expect(res.body.skipped).toEqual([]);
    const [link] = await queryRows<{ volunteer_name: string }>(
      h.handle.db,
      sql`select volunteer_name from links where id = ${res.body.links[0]!.id}`,
    );
    expect(link!.volunteer_name).toBe("Ada");

    const { campaignId: other } = await seedOpen(h);
    const csv = await upload(query(other), SHEET, { accept: "text/csv" });
    expect(csv.status).toBe(201);
    expect(csv.headers.get("content-type")).toMatch(/^text\/csv/);
    const parsed = parseCsv(await csv.text());
    if (!parsed.ok) throw new Error("answer is not CSV");
    const [header, ...rows] = parsed.records.map((r) => r.cells);
    expect(header).toEqual([
      "ref",
      "name",
      "email",
      "phone",
      "id",
      "url",
      "notBefore",
      "expiresAt",
      "status",
    ]);
    expect(rows[0]!.slice(0, 4)).toEqual(["ada@example.org", "Ada", "ada@example.org", "07700 900001"]);
    expect(rows[0]![5]).toMatch(/^http:\/\/127\.0\.0\.1:8080\/l\/[A-Za-z0-9_-]{22}$/);
    expect(rows.map((r) => r[8])).toEqual(["issued", "issued"]);

    // Never stored: not in the links, not in the audit trail.
    const stored = await queryRows<{ n: number }>(
      h.handle.db,
      sql`select count(*)::int as n from audit_events where data::text like '%07700 900001%'`,
    );
    expect(stored[0]!.n).toBe(0);
    const dump = await queryRows<{ t: string }>(
      h.handle.db,
      sql`select row_to_json(l)::text as t from links l`,
    );
    expect(dump.some((r) => r.t.includes("07700 900001"))).toBe(false);
  });

  it("passes through a column of any name, those of Object.prototype's members included", async () => {
    const { campaignId } = await seedOpen(h);
    const sheet = "ref,__proto__,constructor,toString\r\nada-1,p1,c1,t1\r\n";
    const csv = await upload(query(campaignId), sheet, { accept: "text/csv" });
    expect(csv.status).toBe(201);
    const parsed = parseCsv(await csv.text());
    if (!parsed.ok) throw new Error("answer is not CSV");
    const [header, row] = parsed.records.map((r) => r.cells);
    expect(header!.slice(0, 5)).toEqual(["ref", "name", "__proto__", "constructor", "toString"]);
    expect(row!.slice(0, 5)).toEqual(["ada-1", "", "p1", "c1", "t1"]);
  });

  it("refuses a sheet with bad rows as a whole, naming every row (the header being row 1)", async () => {
    const { campaignId } = await seedOpen(h);
    const sheet = "ref,name\r\nok-1,A\r\nhas space,B\r\nok-2,C\r\nok-1,D\r\n";
    const res = await json<Problem>(await upload(query(campaignId), sheet));
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("validation");
    expect(res.body.errors?.map((e) => e.row)).toEqual([3, 5]);
    expect(await linkCount(campaignId)).toBe(0);

    const noRef = await json<Problem>(await upload(query(campaignId), "email\r\na@b\r\n"));
    expect(noRef.body.errors?.[0]?.row).toBe(1);
    const reserved = await json<Problem>(await upload(query(campaignId), "ref,status\r\na,b\r\n"));
    expect(reserved.body).toMatchObject({ code: "validation", errors: [{ row: 1 }] });
    const empty = await json<Problem>(await upload(query(campaignId), "ref,name\r\n"));
    expect(empty.body.code).toBe("validation");
  });

  it("refuses a sheet of more than 10,000 volunteers, naming the first row over; defuses formula cells", async () => {
    const { campaignId } = await seedOpen(h);
    const rows = Array.from({ length: 10_001 }, (_, i) => `v-${i}`);
    const big = await json<Problem>(await upload(query(campaignId), `ref\r\n${rows.join("\r\n")}\r\n`));
    expect(big.status).toBe(400);
    expect(big.body).toMatchObject({ code: "validation", errors: [{ row: 10_002 }] });
    expect(await linkCount(campaignId)).toBe(0);

    const csv = await upload(query(campaignId), 'ref,note\r\nada,"=HYPERLINK(""http://evil"")"\r\n', {
      accept: "text/csv",
    });
    const text = await csv.text();
    expect(text).toContain(`"'=HYPERLINK(""http://evil"")"`);
  });

  it("needs campaignId, phase and scopes in the query, and refuses unknown scopes", async () => {
    const { campaignId } = await seedOpen(h);
    const missing = await json<Problem>(await upload(`/v1/links/batch?campaignId=${campaignId}`, SHEET));
    expect(missing.status).toBe(400);
    expect(missing.body.code).toBe("validation");
    expect(missing.body.errors?.map((e) => [e.in, e.pointer])).toEqual([
      ["query", "#/phase"],
      ["query", "#/scopes"],
    ]);
    const badScope = await json<Problem>(
      await upload(
        `/v1/links/batch?campaignId=${campaignId}&phase=open&scopes=calls:read,calls:delete`,
        SHEET,
      ),
    );
    expect(badScope.status).toBe(400);
    expect(badScope.body.errors?.[0]?.pointer).toBe("#/scopes/1");
    const badReissue = await json<Problem>(await upload(query(campaignId, "&reissue=yes"), SHEET));
    expect(badReissue.body.code).toBe("validation");
    expect(await linkCount(campaignId)).toBe(0);
  });

  it("runs the issuance checks: another campaign's coordinator is forbidden, members:export unissuable", async () => {
    const mine = await seedOpen(h);
    const theirs = await seedOpen(h);
    const { key } = await createKey(h, "coordinator", mine.campaignId);
    const ok = await upload(query(mine.campaignId), SHEET, { token: key });
    expect(ok.status).toBe(201);
    const forbidden = await json<Problem>(await upload(query(theirs.campaignId), SHEET, { token: key }));
    expect(forbidden.status).toBe(403);
    expect(forbidden.body.code).toBe("forbidden");
    const auditor = await createKey(h, "auditor");
    const refused = await json<Problem>(await upload(query(mine.campaignId), SHEET, { token: auditor.key }));
    expect(refused.status).toBe(403);
    const exportScope = await json<Problem>(
      await upload(`/v1/links/batch?campaignId=${mine.campaignId}&phase=open&scopes=members:export`, SHEET),
    );
    expect(exportScope.status).toBe(422);
    expect(exportScope.body.code).toBe("scope_not_issuable");
    expect(await linkCount(theirs.campaignId)).toBe(0);
  });

  it("reads UTF-8 only, and refuses other media types", async () => {
    const { campaignId } = await seedOpen(h);
    const latin = await json<Problem>(
      await upload(query(campaignId), SHEET, { type: "text/csv; charset=iso-8859-1" }),
    );
    expect(latin.status).toBe(415);
    expect(latin.body.code).toBe("unsupported_media_type");
    const plain = await json<Problem>(await upload(query(campaignId), SHEET, { type: "text/plain" }));
    expect(plain.status).toBe(415);
    const res = await call(h, "POST", query(campaignId), {
      rawBody: "",
      headers: { "Content-Type": "text/csv" },
    });
    expect(res.status).toBe(400);
    const none = await h.app.request(query(campaignId), {
      method: "POST",
      headers: { Authorization: `Bearer ${(await createKey(h, "admin")).key}` },
    });
    expect(none.status).toBe(415);
  });

  it("refuses query parameters on a JSON batch: the body carries them", async () => {
    const { campaignId } = await seedOpen(h);
    const res = await callJson<Problem>(h, "POST", "/v1/links/batch?reissue=true", {
      body: { campaignId, phase: "open", scopes: ["calls:read"], volunteers: [{ ref: "a" }] },
    });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("validation");
    expect(res.body.errors?.[0]).toMatchObject({ in: "query", pointer: "#/reissue" });
    expect(await linkCount(campaignId)).toBe(0);
  });
});

describe("re-uploads: skip volunteers holding an active link, unless reissue=true", () => {
  it("a second upload of the same sheet issues nothing and reports every volunteer as skipped", async () => {
    const { campaignId } = await seedOpen(h);
    const first = await json<Answer>(await upload(query(campaignId), SHEET));
    const held = new Map(first.body.links.map((l) => [l.volunteer.ref, l.id]));
    const again = await json<Answer>(await upload(query(campaignId), `${SHEET}cy,Cy,cy@example.org,\r\n`));
    expect(again.status).toBe(201);
    expect(again.body.links.map((l) => [l.volunteer.ref, l.row])).toEqual([["cy", 4]]);
    expect(again.body.skipped).toEqual([
      { ref: "ada@example.org", name: "Ada", linkIds: [held.get("ada@example.org")], row: 2 },
      { ref: "bob-2", name: "Bob", linkIds: [held.get("bob-2")], row: 3 },
    ]);
    expect(await linkCount(campaignId)).toBe(3);

    const events = h.audit.events.length;
    const csv = await upload(query(campaignId), SHEET, { accept: "text/csv" });
    const parsed = parseCsv(await csv.text());
    if (!parsed.ok) throw new Error("answer is not CSV");
    const rows = parsed.records.slice(1).map((r) => r.cells);
    expect(rows.map((r) => [r[0], r[4], r[5], r[8]])).toEqual([
      ["ada@example.org", held.get("ada@example.org"), "", "skipped"],
      ["bob-2", held.get("bob-2"), "", "skipped"],
    ]);
    expect(await linkCount(campaignId)).toBe(3);
    // Nothing issued, nothing written.
    expect(h.audit.events.length).toBe(events);
  });

  it("a volunteer whose link is revoked, or used up, is issued a new one", async () => {
    const { campaignId } = await seedOpen(h);
    const first = await json<Answer>(await upload(query(campaignId), SHEET));
    const ada = first.body.links[0]!;
    await call(h, "POST", "/v1/revocations", { body: { scope: "link", linkId: ada.id, reason: "lost" } });
    const again = await json<Answer>(await upload(query(campaignId), SHEET));
    expect(again.body.links.map((l) => l.volunteer.ref)).toEqual(["ada@example.org"]);
    expect(again.body.skipped.map((s) => s.ref)).toEqual(["bob-2"]);
  });

  it("reissue=true revokes the held links (audited, published) and issues new ones in one transaction", async () => {
    const { campaignId, contestId } = await seedOpen(h);
    const first = await json<Answer>(await upload(query(campaignId), SHEET));
    const old = first.body.links.map((l) => l.id);
    const before = h.published.length;
    const res = await json<Answer>(await upload(query(campaignId, "&reissue=true"), SHEET));
    expect(res.status).toBe(201);
    expect(res.body.skipped).toEqual([]);
    expect(res.body.links.map((l) => l.replaces)).toEqual([[old[0]], [old[1]]]);
    for (const id of old) expect(await statusOf(id)).toBe("revoked");
    for (const l of res.body.links) expect(await statusOf(l.id)).toBe("active");
    const revocations = h.audit.events.filter(
      (e) => e.type === "revocation.created" && old.includes(String(e.linkId)),
    );
    expect(revocations).toHaveLength(2);
    expect(revocations[0]).toMatchObject({
      actor: "admin",
      campaignId,
      data: { revocation: { scope: "link" } },
    });
    expect(h.audit.events.at(-1)).toMatchObject({
      type: "links.batch_issued",
      data: { reissued: 2, source: "csv" },
    });
    // Gateways learn of the revocations: the log holds one change per revocation, announced.
    expect(h.published.length).toBe(before + 1);
    const listed = await callJson<{
      items: { linkId: string | null; campaignId: string | null; contestId: string | null }[];
    }>(h, "GET", "/v1/revocations?limit=10");
    expect(listed.body.items.map((r) => r.linkId)).toEqual(expect.arrayContaining(old));
    // Kept for the record, as a link revocation posted to the API keeps its link's.
    for (const r of listed.body.items.filter((i) => old.includes(String(i.linkId)))) {
      expect(r).toMatchObject({ campaignId, contestId });
    }
    expect(revocations[0]).toMatchObject({ data: { revocation: { campaignId, contestId } } });

    const csv = await upload(query(campaignId, "&reissue=true"), SHEET, { accept: "text/csv" });
    const parsed = parseCsv(await csv.text());
    if (!parsed.ok) throw new Error("answer is not CSV");
    expect(parsed.records.slice(1).map((r) => r.cells[8])).toEqual(["reissued", "reissued"]);
  });

  it("a refused reissue revokes nothing", async () => {
    const { campaignId } = await seedOpen(h);
    const first = await json<Answer>(await upload(query(campaignId), SHEET));
    const bad = await json<Problem>(
      await upload(query(campaignId, "&reissue=true"), `${SHEET}bad ref,X,,\r\n`),
    );
    expect(bad.status).toBe(400);
    const withdrawn = await call(h, "DELETE", `/v1/campaigns/${campaignId}/entitlements/open`);
    expect(withdrawn.status).toBe(204);
    const refused = await json<Problem>(await upload(query(campaignId, "&reissue=true"), SHEET));
    expect(refused.body.code).toBe("not_entitled");
    for (const l of first.body.links) expect(await statusOf(l.id)).toBe("active");
    expect(await linkCount(campaignId)).toBe(2);
  });

  it("a batch that finds links issued meanwhile (another upload of the sheet) is 409 conflict, writing nothing", async () => {
    const { campaignId } = await seedOpen(h);
    await upload(query(campaignId), SHEET);
    // Play the race: the batch's first look finds nothing held, as if the other upload had not
    // committed yet; its look under the lock, in its transaction, finds the committed links.
    const repo = h.deps.repos.links;
    const original = repo.activeByVolunteer;
    repo.activeByVolunteer = async () => new Map();
    const events = h.audit.events.length;
    try {
      const res = await json<Problem>(await upload(query(campaignId), SHEET));
      expect(res.status).toBe(409);
      expect(res.body.code).toBe("conflict");
    } finally {
      repo.activeByVolunteer = original;
    }
    expect(await linkCount(campaignId)).toBe(2);
    expect(h.audit.events.length).toBe(events);
  });

  it("JSON batches follow the same rule, naming volunteers by index", async () => {
    const { campaignId } = await seedOpen(h);
    const body = (refs: string[], reissue?: boolean) => ({
      body: {
        campaignId,
        phase: "open",
        scopes: ["calls:read"],
        volunteers: refs.map((ref) => ({ ref })),
        ...(reissue === undefined ? {} : { reissue }),
      },
    });
    const first = await callJson<Answer>(h, "POST", "/v1/links/batch", body(["a", "b"]));
    expect(first.body.links.map((l) => l.index)).toEqual([0, 1]);
    const again = await callJson<Answer>(h, "POST", "/v1/links/batch", body(["c", "a"]));
    expect(again.body.links.map((l) => [l.volunteer.ref, l.index])).toEqual([["c", 0]]);
    expect(again.body.skipped).toEqual([
      { ref: "a", name: null, linkIds: [first.body.links[0]!.id], index: 1 },
    ]);
    const re = await callJson<Answer>(h, "POST", "/v1/links/batch", body(["a"], true));
    expect(re.body.links[0]!.replaces).toEqual([first.body.links[0]!.id]);
    expect(await statusOf(first.body.links[0]!.id)).toBe("revoked");

    const bad = await callJson<Problem>(h, "POST", "/v1/links/batch", body(["ok", "not ok"]));
    expect(bad.status).toBe(400);
    expect(bad.body.errors).toEqual([
      expect.objectContaining({ in: "body", pointer: "#/volunteers/1/ref", index: 1 }),
    ]);
  });

  it("10,000 rows: one upload, then a re-upload skipping all, then a reissue of all", {
    timeout: 120_000,
  }, async () => {
    const { campaignId } = await seedOpen(h);
    const lines = ["ref,name,email"];
    for (let i = 0; i < 10_000; i++) lines.push(`vol-${i},Volunteer ${i},v${i}@example.org`);
    const sheet = `${lines.join("\r\n")}\r\n`;
    const first = await json<Answer>(await upload(query(campaignId), sheet));
    expect(first.status).toBe(201);
    expect(first.body.links).toHaveLength(10_000);
    const again = await json<Answer>(await upload(query(campaignId), sheet));
    expect(again.body.links).toHaveLength(0);
    expect(again.body.skipped).toHaveLength(10_000);
    const re = await json<Answer>(await upload(query(campaignId, "&reissue=true"), sheet));
    expect(re.body.links).toHaveLength(10_000);
    expect(await linkCount(campaignId)).toBe(20_000);
    const counts = await callJson<{ links: Record<string, number> }>(h, "GET", `/v1/campaigns/${campaignId}`);
    expect(counts.body.links).toMatchObject({ active: 10_000, revoked: 10_000 });
  });
});

describeIntegration("concurrent uploads of one sheet on Postgres", ["postgres"], () => {
  let db: TestDatabase;
  let pg: Harness;
  beforeAll(async () => {
    db = await createTestDatabase();
    pg = await createHarness({ handle: db.handle });
  }, 60_000);
  afterAll(async () => {
    await pg?.close();
    await db?.drop();
  });

  it("issue each volunteer one link: the other upload skips them or is told to send again", async () => {
    const { campaignId } = await seedOpen(pg);
    const send = () =>
      pg.app.request(query(campaignId), {
        method: "POST",
        body: SHEET,
        headers: { "Content-Type": "text/csv", Authorization: `Bearer ${ADMIN}` },
      });
    const answers = await Promise.all([send(), send(), send()]);
    const bodies = await Promise.all(answers.map((r) => r.json() as Promise<Answer & Problem>));
    const issued = bodies.reduce((n, b) => n + (b.links?.length ?? 0), 0);
    expect(issued).toBe(2);
    for (const [i, r] of answers.entries()) {
      expect(r.status === 201 || (r.status === 409 && bodies[i]!.code === "conflict")).toBe(true);
    }
    const [row] = await queryRows<{ n: number }>(
      db.handle.db,
      sql`select count(*)::int as n from links where campaign_id = ${campaignId}`,
    );
    expect(row!.n).toBe(2);
  });
});
