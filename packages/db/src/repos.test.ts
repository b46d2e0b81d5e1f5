import { readFileSync } from "node:fs";
import { epochSeconds, PhaselockError, randomId, type Scope, sha256Hex } from "@phaselock/core";
import { closedForLink, indexClosures, type Phase, RevocationIndex } from "@phaselock/policy";
import { describeIntegration } from "@phaselock/testkit";
import { count, eq, sql } from "drizzle-orm";
import { afterAll, beforeAll, expect, it } from "vitest";
import {
  assertMigrated,
  createRepos,
  DatabaseNotMigratedError,
  type Db,
  LINK_INSERT_CHUNK,
  type Link,
  loadClosures,
  loadPolicyChanges,
  loadPolicySnapshot,
  loadPublicKeys,
  migrate,
  type NewLink,
  type NewRevocation,
  queryRows,
  type Repos,
  schema,
  sharedGatewaySecret,
} from "./index.ts";
import { dbBackends, type TestDb } from "./testing.ts";

/** The committed migrations (a new one must not need this test edited). */
const MIGRATIONS = (
  JSON.parse(readFileSync(new URL("../drizzle/meta/_journal.json", import.meta.url), "utf8")) as {
    entries: unknown[];
  }
).entries.length;

// Vitest 4 inline projects do not inherit the root timeouts; starting PGlite alone takes seconds.
const SLOW = 60_000;

const at = (iso: string): Date => new Date(iso);
const NOW = at("2020-03-01T12:00:00Z");

const change = { now: NOW, actor: "admin", reason: "timeline replaced" };

const timeline = (): Phase[] => [
  // Deliberately out of order: the repository stores and returns them sorted.
  {
    name: "ballot",
    startsAt: at("2020-03-10T00:00:00Z"),
    endsAt: at("2020-04-01T00:00:00Z"),
    memberData: true,
  },
  {
    name: "nominations",
    startsAt: at("2020-02-01T00:00:00Z"),
    endsAt: at("2020-03-10T00:00:00Z"),
    memberData: false,
  },
];

/** What a stored link's token says, as `RevocationIndex.covers` reads it. */
const claimsOf = (r: NewLink) => ({
  jti: r.id,
  sub: r.volunteerRef,
  iat: epochSeconds(r.issuedAt),
  cmp: r.campaignId,
  cst: r.contestId,
  phs: r.phase,
});

const expectCode = async (p: Promise<unknown>, code: string): Promise<void> => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PhaselockError);
  expect((err as PhaselockError).code).toBe(code);
};

for (const backend of dbBackends) {
  describeIntegration(`db repositories (${backend.name})`, backend.needs, () => {
    let testDb: TestDb;
    let db: Db;
    let repos: Repos;

    beforeAll(async () => {
      testDb = await backend.open();
      db = testDb.handle.db;
      repos = createRepos(db);
    }, SLOW);
    afterAll(async () => {
      await testDb?.drop();
    }, SLOW);

    /** A contest and campaign of their own for one test. */
    const fixture = async () => {
      const contestId = randomId("cst");
      const campaignId = randomId("cmp");
      await repos.contests.replaceTimeline(contestId, "Leadership", timeline(), change);
      await repos.campaigns.upsert({ id: campaignId, name: "Team", contestId, limits: {} });
      return { contestId, campaignId };
    };

    const link = (base: { contestId: string; campaignId: string }, over: Partial<NewLink> = {}): NewLink => ({
      id: randomId("lnk"),
      campaignId: base.campaignId,
      contestId: base.contestId,
      phase: "ballot",
      volunteerRef: "vol-1",
      volunteerName: "Ada",
      scopes: ["calls:read", "calls:write"],
      notBefore: at("2020-03-10T00:00:00Z"),
      expiresAt: at("2020-03-17T00:00:00Z"),
      maxUses: 5,
      issuedBy: "admin",
      issuedAt: at("2020-03-01T10:00:00Z"),
      kid: "kid-1",
      ...over,
    });

    it("migrate is idempotent and assertMigrated accepts the result", async () => {
      expect(await migrate(testDb.handle)).toEqual({ applied: 0, total: MIGRATIONS });
      await expect(assertMigrated(db)).resolves.toBeUndefined();
      expect(await repos.policyState.current()).toBeGreaterThanOrEqual(0);
    });

    it("assertMigrated refuses an empty database until it is migrated", { timeout: SLOW }, async () => {
      const empty = await backend.open({ migrate: false });
      try {
        const err = await assertMigrated(empty.handle.db).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(DatabaseNotMigratedError);
        expect((err as Error).message).toBe("database is not migrated: run `pnpm db:migrate`");
        expect(await migrate(empty.handle)).toEqual({ applied: MIGRATIONS, total: MIGRATIONS });
        expect(await migrate(empty.handle)).toEqual({ applied: 0, total: MIGRATIONS });
        await assertMigrated(empty.handle.db);
        expect(await createRepos(empty.handle.db).policyState.current()).toBe(0);
      } finally {
        await empty.drop();
      }
    });

    if (backend.name === "postgres") {
      it("runs without JIT: a link-status plan's estimated cost would otherwise compile it", async () => {
        expect(await queryRows<{ jit: string }>(db, sql`show jit`)).toEqual([{ jit: "off" }]);
      });
    }

    it("replaces a contest timeline in one versioned write", async () => {
      const id = randomId("cst");
      const before = await repos.policyState.current();
      const first = await repos.contests.replaceTimeline(id, "Leadership 2020", timeline(), change);
      expect(first.version).toBe(before + 1);
      expect(await repos.policyState.current()).toBe(first.version);

      const stored = await repos.contests.get(id);
      expect(stored?.name).toBe("Leadership 2020");
      expect(stored?.phases.map((p) => p.name)).toEqual(["nominations", "ballot"]);
      expect(stored?.phases[1]).toEqual(timeline()[0]);

      const ballotOnly = [{ ...timeline()[0]!, endsAt: at("2020-03-20T00:00:00Z") }];
      const second = await repos.contests.replaceTimeline(id, "Renamed", ballotOnly, change);
      expect(second.version).toBe(first.version + 1);
      expect(await repos.contests.get(id)).toEqual({ id, name: "Renamed", phases: ballotOnly });
      expect(await repos.contests.get("no-such-contest")).toBeNull();
    });

    it("records a closure for a phase a timeline ends early, and reports closed phases it re-opens", async () => {
      const id = randomId("cst");
      await repos.contests.replaceTimeline(id, "L", timeline(), change);
      // nominations runs at NOW; ending it an hour ago ends it early.
      const cut = timeline().map((p) =>
        p.name === "nominations" ? { ...p, endsAt: at("2020-03-01T11:00:00Z") } : p,
      );
      const ended = await repos.contests.replaceTimeline(id, "L", cut, change);
      expect(ended.closed).toEqual([
        { contestId: id, phase: "nominations", closedAt: NOW, reason: "timeline replaced", actor: "admin" },
      ]);
      expect(ended.reopened).toEqual([]);

      const later = { ...change, now: at("2020-03-01T13:00:00Z") };
      const reopened = await repos.contests.replaceTimeline(id, "L", timeline(), later);
      expect(reopened.closed).toEqual([]);
      expect(reopened.reopened).toEqual([{ phase: "nominations", closedAt: NOW }]);
      const snapshot = await loadPolicySnapshot(db);
      expect(snapshot.version).toBe(reopened.version);
      expect(snapshot.closures.get(id)).toEqual(new Map([["nominations", NOW]]));
    });

    it("ends a phase now in one versioned write, refusing unknown and ended phases", async () => {
      const { contestId } = await fixture();
      const before = await repos.policyState.current();
      const result = await repos.contests.endPhase(contestId, "nominations", { ...change, reason: "leak" });
      expect(result).toMatchObject({ ok: true, version: before + 1 });
      if (!result.ok) return;
      expect(result.closure).toEqual({
        contestId,
        phase: "nominations",
        closedAt: NOW,
        reason: "leak",
        actor: "admin",
      });
      const stored = await repos.contests.get(contestId);
      expect(stored).toEqual(result.contest);
      expect(stored?.phases.find((p) => p.name === "nominations")?.endsAt).toEqual(NOW);

      // Not begun yet: it becomes an empty window at its start.
      const future = await repos.contests.endPhase(contestId, "ballot", change);
      expect(future.ok && future.contest.phases.find((p) => p.name === "ballot")?.endsAt).toEqual(
        at("2020-03-10T00:00:00Z"),
      );

      const version = await repos.policyState.current();
      expect(await repos.contests.endPhase(contestId, "nominations", change)).toEqual({
        ok: false,
        code: "phase_closed",
      });
      expect(await repos.contests.endPhase(contestId, "nope", change)).toEqual({
        ok: false,
        code: "not_found",
      });
      expect(await repos.contests.endPhase("no-such-contest", "ballot", change)).toEqual({
        ok: false,
        code: "not_found",
      });
      // A refusal rolls its version bump back.
      expect(await repos.policyState.current()).toBe(version);
      const snapshot = await loadPolicySnapshot(db);
      expect(snapshot.closures.get(contestId)).toEqual(
        new Map([
          ["nominations", NOW],
          ["ballot", NOW],
        ]),
      );
    });

    it("hands out one version per policy write, even concurrently", async () => {
      const { campaignId } = await fixture();
      const before = await repos.policyState.current();
      const results = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          repos.entitlements.put(campaignId, `phase-${i}`, ["calls:read"]),
        ),
      );
      const versions = results.map((r) => r.version).sort((a, b) => a - b);
      expect(versions).toEqual(Array.from({ length: 10 }, (_, i) => before + 1 + i));
    });

    it("upserts campaigns and refuses an unknown contest without bumping", async () => {
      const { contestId } = await fixture();
      const id = randomId("cmp");
      const created = await repos.campaigns.upsert({ id, name: "Starmer", contestId, limits: {} });
      expect(created.campaign).toEqual({ id, name: "Starmer", contestId, limits: {} });

      const updated = await repos.campaigns.upsert({
        id,
        name: "Starmer 2020",
        contestId,
        limits: { requestsPerMinute: 30 },
      });
      expect(updated.version).toBe(created.version + 1);
      expect(await repos.campaigns.get(id)).toEqual({
        id,
        name: "Starmer 2020",
        contestId,
        limits: { requestsPerMinute: 30 },
      });
      expect(await repos.campaigns.get("no-such-campaign")).toBeNull();

      // A contact is kept as given, and a later upsert without one clears it (PUT replaces).
      const contact = "Jo Bloggs, jo@example.org or 07700 900456";
      await repos.campaigns.upsert({ id, name: "Starmer 2020", contestId, limits: {}, contact });
      expect((await repos.campaigns.get(id))?.contact).toBe(contact);
      expect((await loadPolicySnapshot(testDb.handle.db)).campaigns.get(id)?.contact).toBe(contact);
      await repos.campaigns.upsert({ id, name: "Starmer 2020", contestId, limits: {} });
      expect(await repos.campaigns.get(id)).not.toHaveProperty("contact");

      const before = await repos.policyState.current();
      await expectCode(
        repos.campaigns.upsert({ id: randomId("cmp"), name: "x", contestId: "nope", limits: {} }),
        "not_found",
      );
      expect(await repos.policyState.current()).toBe(before);
    });

    it("puts, replaces and removes entitlements", async () => {
      const { campaignId } = await fixture();
      const put = await repos.entitlements.put(campaignId, "ballot", [
        "calls:read",
        "calls:read",
        "members:read",
      ]);
      expect(put.scopes).toEqual(["calls:read", "members:read"]);
      expect(await repos.entitlements.get(campaignId, "ballot")).toEqual(["calls:read", "members:read"]);

      const replaced = await repos.entitlements.put(campaignId, "ballot", ["calls:write"]);
      expect(replaced.version).toBe(put.version + 1);
      expect(await repos.entitlements.get(campaignId, "ballot")).toEqual(["calls:write"]);

      const removed = await repos.entitlements.remove(campaignId, "ballot");
      expect(removed).toEqual({ version: replaced.version + 1, removed: true });
      expect(await repos.entitlements.get(campaignId, "ballot")).toBeNull();
      // Nothing to remove: no write, and the version a subscriber already has.
      expect(await repos.entitlements.remove(campaignId, "ballot")).toEqual({
        version: removed.version,
        removed: false,
      });
      await expectCode(repos.entitlements.put("no-such-campaign", "ballot", ["calls:read"]), "not_found");
    });

    it("stores only the hash of an API key and forgets deleted keys", async () => {
      const { campaignId } = await fixture();
      const { id, key } = await repos.apiKeys.create({ role: "coordinator", campaignId, label: "north" });
      expect(id).toMatch(/^key_/);
      expect(key).toMatch(/^plk_[A-Za-z0-9_-]{43}$/);

      const [row] = await db.select().from(schema.apiKeys).where(eq(schema.apiKeys.id, id));
      expect(row?.keyHash).toBe(sha256Hex(key));
      expect(JSON.stringify(row)).not.toContain(key.slice(4));

      expect(await repos.apiKeys.findActiveByKey(key)).toMatchObject({
        id,
        role: "coordinator",
        campaignId,
        label: "north",
      });
      expect(await repos.apiKeys.findActiveByKey(`${key}x`)).toBeNull();
      expect((await repos.apiKeys.list()).map((k) => k.id)).toContain(id);

      const before = await repos.policyState.current();
      expect(await repos.apiKeys.delete(id)).toEqual({ version: before + 1, deleted: true });
      expect(await repos.apiKeys.findActiveByKey(key)).toBeNull();
      expect((await repos.apiKeys.list()).map((k) => k.id)).not.toContain(id);
      expect(await repos.apiKeys.delete(id)).toEqual({ version: before + 1, deleted: false });

      await expectCode(repos.apiKeys.create({ role: "coordinator" }), "validation");
      await expectCode(repos.apiKeys.create({ role: "admin", campaignId }), "validation");
    });

    it("inserts 10,000 links in one call, in chunks", {
      timeout: SLOW,
    }, async () => {
      const base = await fixture();
      expect(LINK_INSERT_CHUNK).toBeLessThan(10_000);
      const rows = Array.from({ length: 10_000 }, (_, i) => link(base, { volunteerRef: `vol-${i}` }));
      expect(await repos.links.insertMany(rows)).toBe(10_000);
      const [stored] = await db
        .select({ n: count() })
        .from(schema.links)
        .where(eq(schema.links.campaignId, base.campaignId));
      expect(stored?.n).toBe(10_000);
      const sample = await repos.links.get(rows[9_999]!.id);
      expect(sample).toMatchObject({
        volunteerRef: "vol-9999",
        uses: 0,
        scopes: ["calls:read", "calls:write"],
      });
    });

    it("writes a batch's links in id order, whatever order they come in (appends to its indexes)", {
      timeout: SLOW,
    }, async () => {
      const base = await fixture();
      const rows = Array.from({ length: LINK_INSERT_CHUNK + 500 }, (_, i) =>
        link(base, { volunteerRef: `v-${i}` }),
      );
      expect(await repos.links.insertMany(rows)).toBe(rows.length);
      // Heap order: each row is written after the one before it in the statement that inserts it.
      const stored = await queryRows<{ id: string }>(
        db,
        sql`select id from links where campaign_id = ${base.campaignId} order by ctid`,
      );
      const byId = rows.map((r) => r.id).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
      expect(stored.map((r) => r.id)).toEqual(byId);
    });

    it("stores every column as given, whether rows share it or not, whatever the text", async () => {
      const base = await fixture();
      const awkward = ['Zoë "the closer" O\'Neil', "back\\slash {a,b} NULL", "", "NULL", "👋 ,\t\n"];
      const shared = Array.from({ length: 3 }, (_, i) =>
        link(base, { volunteerRef: `same-${i}`, volunteerName: awkward[i]!, codeHash: `h-${randomId("c")}` }),
      );
      const mixed = awkward.map((name, i) =>
        link(base, {
          volunteerRef: name || "r",
          volunteerName: i === 2 ? null : name,
          scopes: i % 2 ? ["calls:read"] : ["calls:read", "members:read"],
          maxUses: i + 1,
          issuedBy: i % 2 ? "admin" : "key_1",
          notBefore: at(`2020-03-1${i}T00:00:00Z`),
          issuedAt: new Date(at("2020-03-01T10:00:00Z").getTime() + i),
          kid: `kid-${i % 2}`,
          codeHash: i === 3 ? null : `h-${randomId("c")}`,
        }),
      );
      for (const rows of [shared, mixed, [link(base, { volunteerName: null })]]) {
        await repos.links.insertMany(rows);
        for (const row of rows) {
          expect(await repos.links.get(row.id)).toEqual({
            ...row,
            volunteerName: row.volunteerName ?? null,
            codeHash: row.codeHash ?? null,
            uses: 0,
            lastSeenAt: null,
            suspendedAt: null,
            suspendedReason: null,
          });
        }
      }
    });

    it("inserts links inside the caller's transaction, all or nothing", { timeout: SLOW }, async () => {
      const base = await fixture();
      const rows = Array.from({ length: LINK_INSERT_CHUNK + 10 }, () => link(base));
      const failure = await db
        .transaction(async (tx) => {
          await repos.links.insertMany(rows, tx);
          throw new Error("signing failed");
        })
        .catch((e: unknown) => e);
      expect(failure).toBeInstanceOf(Error);
      expect(await repos.links.get(rows[0]!.id)).toBeNull();
      expect(await repos.links.get(rows.at(-1)!.id)).toBeNull();
    });

    it("searches links by part of the volunteer's ref or name, in any case, with % and _ literal", async () => {
      const base = await fixture();
      const rows = [
        link(base, { volunteerRef: "vol-ada", volunteerName: "Ada Lovelace" }),
        link(base, { volunteerRef: "vol-grace", volunteerName: "Grace Hopper" }),
        link(base, { volunteerRef: "v_100%", volunteerName: null }),
        link(base, { volunteerRef: "v-1000", volunteerName: "Ninety" }),
      ];
      await repos.links.insertMany(rows);
      const found = async (search: string) =>
        (await repos.links.list({ campaignId: base.campaignId, search, limit: 50, now: NOW })).items
          .map((l) => l.volunteerRef)
          .sort();
      expect(await found("LOVE")).toEqual(["vol-ada"]);
      expect(await found("vol-")).toEqual(["vol-ada", "vol-grace"]);
      expect(await found("hopper")).toEqual(["vol-grace"]);
      expect(await found("_1")).toEqual(["v_100%"]);
      expect(await found("0%")).toEqual(["v_100%"]);
      expect(await found("nobody")).toEqual([]);
    });

    it("lists links newest first with filters and a stable cursor", async () => {
      const base = await fixture();
      // 25 links over 13 seconds: pairs share a second, so ids break ties.
      const rows = Array.from({ length: 25 }, (_, i) =>
        link(base, {
          volunteerRef: i % 5 === 0 ? "vol-a" : "vol-b",
          issuedAt: new Date(at("2020-03-01T10:00:00Z").getTime() + Math.floor(i / 2) * 1000),
          expiresAt: i < 4 ? at("2020-03-01T11:00:00Z") : at("2020-03-17T00:00:00Z"),
        }),
      );
      await repos.links.insertMany(rows);
      const expected = [...rows].sort(
        (a, b) => b.issuedAt.getTime() - a.issuedAt.getTime() || (a.id < b.id ? 1 : a.id > b.id ? -1 : 0),
      );

      const seen: Link[] = [];
      let cursor: string | null = null;
      const pageSizes: number[] = [];
      do {
        const page = await repos.links.list({ campaignId: base.campaignId, limit: 10, cursor, now: NOW });
        pageSizes.push(page.items.length);
        seen.push(...page.items);
        cursor = page.nextCursor;
        if (pageSizes.length === 1) {
          // A link issued after the first page does not shift the pages that follow.
          await repos.links.insertMany([link(base, { issuedAt: at("2020-03-01T11:00:00Z") })]);
        }
      } while (cursor);
      expect(pageSizes).toEqual([10, 10, 5]);
      expect(seen.map((l) => l.id)).toEqual(expected.map((l) => l.id));

      const mine = await repos.links.list({
        campaignId: base.campaignId,
        volunteer: "vol-a",
        limit: 50,
        now: NOW,
      });
      expect(mine.items).toHaveLength(5);
      expect(mine.items.every((l) => l.volunteerRef === "vol-a")).toBe(true);
      expect(mine.nextCursor).toBeNull();

      const expired = await repos.links.list({
        campaignId: base.campaignId,
        status: "expired",
        limit: 50,
        now: NOW,
      });
      expect(expired.items.map((l) => l.id).sort()).toEqual(
        rows
          .slice(0, 4)
          .map((l) => l.id)
          .sort(),
      );
      expect(expired.items.every((l) => l.status === "expired")).toBe(true);

      await repos.revocations.insert({
        scope: "link",
        linkId: rows[10]!.id,
        reason: "lost phone",
        actor: "admin",
        effectiveAt: NOW,
      });
      const revoked = await repos.links.list({
        campaignId: base.campaignId,
        status: "revoked",
        limit: 50,
        now: NOW,
      });
      expect(revoked.items.map((l) => l.id)).toEqual([rows[10]!.id]);
      expect((await repos.links.getWithStatus(rows[10]!.id, NOW))?.status).toBe("revoked");

      const active = await repos.links.list({
        campaignId: base.campaignId,
        status: "active",
        limit: 50,
        now: NOW,
      });
      expect(active.items).toHaveLength(26 - 4 - 1);
      expect(active.items.every((l) => l.status === "active")).toBe(true);

      await expectCode(
        repos.links.list({ campaignId: base.campaignId, limit: 10, cursor: "not-a-cursor", now: NOW }),
        "validation",
      );
    });

    it("agrees with RevocationIndex on which links are revoked", async () => {
      const base = await fixture();
      const other = await fixture();
      const t0 = at("2020-03-01T10:00:00Z");
      const sec = (s: number, ms = 0) => new Date(t0.getTime() + s * 1000 + ms);
      const rows = [
        link(base, { volunteerRef: "v1", issuedAt: sec(0) }),
        link(base, { volunteerRef: "v1", issuedAt: sec(5) }),
        link(base, { volunteerRef: "v2", issuedAt: sec(5) }),
        link(base, { volunteerRef: "v2", phase: "nominations", issuedAt: sec(9) }),
        link(other, { volunteerRef: "v1", issuedAt: sec(2) }),
        link(other, { volunteerRef: "v3", issuedAt: sec(20) }),
      ];
      await repos.links.insertMany(rows);
      const inserted = await Promise.all([
        // Same second as rows[1] and rows[2] (ms ignored): they are covered.
        repos.revocations.insert({
          scope: "volunteer",
          volunteerRef: "v1",
          campaignId: base.campaignId,
          reason: "r",
          actor: "admin",
          effectiveAt: sec(5, 900),
        }),
        repos.revocations.insert({
          scope: "phase",
          contestId: base.contestId,
          phase: "nominations",
          reason: "r",
          actor: "admin",
          effectiveAt: sec(8),
        }),
        repos.revocations.insert({
          scope: "campaign",
          campaignId: other.campaignId,
          reason: "r",
          actor: "admin",
          effectiveAt: sec(2),
        }),
      ]);
      const index = new RevocationIndex(inserted.map((r) => r.revocation));
      for (const r of rows) {
        const got = await repos.links.getWithStatus(r.id, NOW);
        const covered = index.covers(claimsOf(r));
        expect(got?.status === "revoked", `${r.volunteerRef} @ ${r.issuedAt.toISOString()}`).toBe(
          covered !== undefined,
        );
      }
      const statuses = await Promise.all(
        rows.map(async (r) => (await repos.links.getWithStatus(r.id, NOW))?.status),
      );
      expect(statuses).toEqual(["revoked", "revoked", "active", "active", "revoked", "active"]);
    });

    it("counts a campaign's links by status exactly as each link's own status reads", async () => {
      const base = await fixture();
      const other = await fixture();
      const t0 = at("2020-03-01T10:00:00Z");
      const sec = (s: number, ms = 0) => new Date(t0.getTime() + s * 1000 + ms);
      const anyone = randomId("vol");
      const rows = [
        link(base, { volunteerRef: "v1", issuedAt: sec(0) }),
        link(base, { volunteerRef: "v1", issuedAt: sec(5) }),
        link(base, { volunteerRef: "v2", issuedAt: sec(5) }),
        link(base, { volunteerRef: "v2", phase: "nominations", issuedAt: sec(9) }),
        link(base, { volunteerRef: anyone, issuedAt: sec(3) }),
        link(base, { volunteerRef: "v4", issuedAt: sec(30) }),
        link(base, { volunteerRef: "v5", issuedAt: sec(31), expiresAt: at("2020-03-01T11:00:00Z") }),
        link(base, { volunteerRef: "v6", issuedAt: sec(32), maxUses: 1 }),
        link(base, { volunteerRef: "v7", issuedAt: sec(33) }),
        link(base, { volunteerRef: "v8", issuedAt: sec(34) }),
        // A phase its contest no longer has: expired, whatever its `exp`.
        link(base, { volunteerRef: "v9", issuedAt: sec(35), phase: "withdrawn" }),
        // Before the `all` watermark below (every other link of this file is issued at 10:00 or later).
        link(base, { volunteerRef: "v10", issuedAt: sec(-5) }),
        link(other, { volunteerRef: "v1", issuedAt: sec(2) }),
        link(other, { volunteerRef: anyone, issuedAt: sec(4) }),
        link(other, { volunteerRef: "v3", issuedAt: sec(20) }),
      ];
      await repos.links.insertMany(rows);
      await repos.links.redeem(rows[7]!.id, NOW);
      await repos.links.suspend(rows[8]!.id, "too many devices", NOW);
      const revoke = (r: Record<string, unknown>) =>
        repos.revocations.insert({ reason: "r", actor: "admin", ...r } as NewRevocation);
      const inserted = [
        await revoke({
          scope: "volunteer",
          volunteerRef: "v1",
          campaignId: base.campaignId,
          effectiveAt: sec(5, 900),
        }),
        await revoke({ scope: "volunteer", volunteerRef: anyone, effectiveAt: sec(3) }),
        await revoke({
          scope: "phase",
          contestId: base.contestId,
          phase: "nominations",
          effectiveAt: sec(8),
        }),
        await revoke({
          scope: "phase",
          contestId: base.contestId,
          phase: "nominations",
          effectiveAt: sec(10),
        }),
        await revoke({ scope: "campaign", campaignId: other.campaignId, effectiveAt: sec(2) }),
        await revoke({ scope: "contest", contestId: other.contestId, effectiveAt: sec(20) }),
        await revoke({
          scope: "link",
          linkId: rows[9]!.id,
          campaignId: base.campaignId,
          contestId: base.contestId,
          effectiveAt: sec(40),
        }),
        await revoke({ scope: "all", effectiveAt: sec(-1) }),
      ];
      const index = new RevocationIndex(inserted.map((r) => r.revocation));
      for (const campaign of [base, other]) {
        const mine = rows.filter((r) => r.campaignId === campaign.campaignId);
        const tally = { active: 0, revoked: 0, expired: 0, suspended: 0, exhausted: 0 };
        for (const r of mine) {
          const status = (await repos.links.getWithStatus(r.id, NOW))!.status;
          const covered = index.covers(claimsOf(r));
          expect(status === "revoked", r.volunteerRef).toBe(covered !== undefined);
          tally[status]++;
        }
        expect(await repos.links.countByStatus(campaign.campaignId, NOW)).toEqual(tally);
      }
      expect(await repos.links.countByStatus(base.campaignId, NOW)).toEqual({
        active: 2,
        revoked: 6,
        expired: 2,
        suspended: 1,
        exhausted: 1,
      });
    });

    it("reads a link its phase's closure ended as expired after a timeline reopens the phase", async () => {
      const base = await fixture();
      const other = await fixture();
      const closedAt = at("2020-03-01T11:00:00.250Z");
      const rows = [
        link(base, { volunteerRef: "before", phase: "nominations", issuedAt: at("2020-03-01T10:00:00Z") }),
        // In the closure's second: token times cannot tell it from one issued just before.
        link(base, {
          volunteerRef: "same-second",
          phase: "nominations",
          issuedAt: at("2020-03-01T11:00:00.900Z"),
        }),
        link(base, { volunteerRef: "after", phase: "nominations", issuedAt: at("2020-03-01T11:00:01Z") }),
        // Another phase of the contest, and the same phase of another contest: not covered.
        link(base, { volunteerRef: "ballot", issuedAt: at("2020-03-01T10:00:00Z") }),
        link(other, { volunteerRef: "before", phase: "nominations", issuedAt: at("2020-03-01T10:00:00Z") }),
      ];
      await repos.links.insertMany(rows);
      const ended = await repos.contests.endPhase(base.contestId, "nominations", {
        ...change,
        now: closedAt,
      });
      expect(ended.ok).toBe(true);
      // The same timeline again: the phase's end moves back to 2020-03-10, past NOW.
      await repos.contests.replaceTimeline(base.contestId, "Leadership", timeline(), {
        ...change,
        now: closedAt,
      });
      expect(
        (await repos.contests.get(base.contestId))!.phases.find((p) => p.name === "nominations")!.endsAt,
      ).toEqual(at("2020-03-10T00:00:00Z"));

      // The gateway's rule, from the same stored closures.
      const index = indexClosures(await loadClosures(db, base.contestId));
      const expected = ["expired", "expired", "active", "active", "active"];
      for (const [i, r] of rows.entries()) {
        expect((await repos.links.getWithStatus(r.id, NOW))!.status, r.volunteerRef).toBe(expected[i]);
        if (r.contestId === base.contestId) {
          expect(closedForLink(index, claimsOf(r)), r.volunteerRef).toBe(expected[i] === "expired");
        }
      }
      expect(await repos.links.countByStatus(base.campaignId, NOW)).toEqual({
        active: 2,
        revoked: 0,
        expired: 2,
        suspended: 0,
        exhausted: 0,
      });
      const active = await repos.links.list({
        campaignId: base.campaignId,
        status: "active",
        limit: 50,
        now: NOW,
      });
      expect(active.items.map((l) => l.volunteerRef).sort()).toEqual(["after", "ballot"]);
      const expired = await repos.links.list({
        campaignId: base.campaignId,
        status: "expired",
        limit: 50,
        now: NOW,
      });
      expect(expired.items.map((l) => l.volunteerRef).sort()).toEqual(["before", "same-second"]);
      // A re-uploaded sheet skips only the volunteer whose link still works.
      const held = await repos.links.activeByVolunteer(
        base.campaignId,
        "nominations",
        ["before", "same-second", "after"],
        NOW,
      );
      expect([...held.keys()]).toEqual(["after"]);
    });

    it("redeems exactly maxUses times under concurrent calls", async () => {
      const base = await fixture();
      const row = link(base, { maxUses: 5 });
      await repos.links.insertMany([row]);
      const results = await Promise.all(Array.from({ length: 20 }, () => repos.links.redeem(row.id, NOW)));
      const ok = results.filter((r) => r.ok);
      expect(ok).toHaveLength(5);
      expect(ok.map((r) => (r.ok ? r.uses : 0)).sort()).toEqual([1, 2, 3, 4, 5]);
      expect(results.filter((r) => !r.ok && r.reason === "uses_exhausted")).toHaveLength(15);
      expect(await repos.links.get(row.id)).toMatchObject({ uses: 5, lastSeenAt: NOW });
      expect(await repos.links.redeem("lnk_missing", NOW)).toEqual({ ok: false, reason: "not_found" });
    });

    it("opens the session with the use, from maxDevices devices at most, racing ones included", async () => {
      const base = await fixture();
      const row = link(base, { maxUses: 20 });
      await repos.links.insertMany([row]);
      const open = (deviceId: string) => ({
        session: {
          id: randomId("ses"),
          tokenHash: sha256Hex(randomId("cred")),
          linkId: row.id,
          deviceId,
          createdAt: NOW,
          expiresAt: at("2020-03-02T00:00:00Z"),
        },
        maxDevices: 3,
      });
      expect(await repos.links.redeem(row.id, NOW, open("dev_1"))).toMatchObject({ ok: true, uses: 1 });
      // The same device again is no new device: it holds a live session, which it continues.
      expect(await repos.links.redeem(row.id, NOW, open("dev_1"))).toMatchObject({
        ok: false,
        reason: "live_session",
      });
      expect(await repos.links.redeem(row.id, NOW, open("dev_2"))).toMatchObject({ ok: true, uses: 2 });
      const racing = await Promise.all(
        ["dev_3", "dev_4", "dev_5"].map((d) => repos.links.redeem(row.id, NOW, open(d))),
      );
      expect(racing.filter((r) => r.ok)).toHaveLength(1);
      expect(racing.filter((r) => !r.ok && r.reason === "too_many_devices")).toHaveLength(2);
      // A refused device counted no use and opened no session.
      expect(await repos.links.getWithStatus(row.id, NOW)).toMatchObject({ uses: 3, devices: 3 });
    });

    it("one device's racing redemptions (a double tap) count one use: the others find its live session", async () => {
      const base = await fixture();
      const row = link(base, { maxUses: 5 });
      await repos.links.insertMany([row]);
      const open = () => ({
        session: {
          id: randomId("ses"),
          tokenHash: sha256Hex(randomId("cred")),
          linkId: row.id,
          deviceId: "dev_tap",
          createdAt: NOW,
          expiresAt: at("2020-03-02T00:00:00Z"),
        },
      });
      const taps = await Promise.all([1, 2, 3, 4].map(() => repos.links.redeem(row.id, NOW, open())));
      const opened = taps.filter((r) => r.ok);
      expect(opened).toHaveLength(1);
      const continued = taps.filter((r) => !r.ok && r.reason === "live_session");
      expect(continued).toHaveLength(3);
      expect(await repos.links.getWithStatus(row.id, NOW)).toMatchObject({ uses: 1, devices: 1 });
      // Once that session has ended, the device's next redemption counts again.
      const later = at("2020-03-02T00:00:00Z");
      expect(await repos.links.redeem(row.id, later, open())).toMatchObject({ ok: true, uses: 2 });
    });

    it("suspends links (versioned) and records activity monotonically", async () => {
      const base = await fixture();
      const row = link(base);
      await repos.links.insertMany([row]);

      await repos.links.touch(row.id, at("2020-03-11T10:00:00Z"));
      await repos.links.touch(row.id, at("2020-03-11T09:00:00Z"));
      expect((await repos.links.get(row.id))?.lastSeenAt).toEqual(at("2020-03-11T10:00:00Z"));

      const before = await repos.policyState.current();
      const suspended = await repos.links.suspend(row.id, "too many devices", NOW);
      expect(suspended).toEqual({ version: before + 1, suspended: true });
      expect(await repos.links.suspend(row.id, "again", NOW)).toEqual({
        version: before + 1,
        suspended: false,
      });
      expect(await repos.links.get(row.id)).toMatchObject({
        suspendedAt: NOW,
        suspendedReason: "too many devices",
      });
      expect(await repos.links.redeem(row.id, NOW)).toEqual({ ok: false, reason: "suspended" });
      expect((await repos.links.getWithStatus(row.id, NOW))?.status).toBe("suspended");
    });

    it("publishes signing keys until their last token expires", async () => {
      const jwk = (kid: string) => ({ kty: "OKP", crv: "Ed25519", x: `x-${kid}`, kid });
      const k1 = randomId("kid");
      const k2 = randomId("kid");
      const k3 = randomId("kid");
      const first = await repos.signingKeys.insert({
        kid: k1,
        publicJwk: jwk(k1),
        privateKeyEnc: "v1.a.b.c",
        createdAt: at("2020-01-01T00:00:00Z"),
      });
      expect((await repos.signingKeys.getActive())?.kid).toBe(k1);
      await repos.signingKeys.bumpLastExpiresAt(k1, at("2020-03-20T00:00:00Z"));
      await repos.signingKeys.bumpLastExpiresAt(k1, at("2020-03-05T00:00:00Z"));

      const rotated = await repos.signingKeys.insert(
        { kid: k2, publicJwk: jwk(k2), privateKeyEnc: "v1.d.e.f", createdAt: at("2020-03-01T00:00:00Z") },
        { retireActiveAt: at("2020-03-01T00:00:00Z") },
      );
      expect(rotated.version).toBe(first.version + 1);
      const active = await repos.signingKeys.getActive();
      expect(active).toMatchObject({ kid: k2, privateKeyEnc: "v1.d.e.f", retiredAt: null });

      // A retired key that never signed anything has no known last expiry: kept, to be safe.
      await repos.signingKeys.insert({
        kid: k3,
        publicJwk: jwk(k3),
        privateKeyEnc: "v1.g.h.i",
        createdAt: at("2019-12-01T00:00:00Z"),
      });
      const retired = await repos.signingKeys.retire(k3, NOW);
      expect(retired.retired).toBe(true);
      expect((await repos.signingKeys.retire(k3, NOW)).retired).toBe(false);

      const published = await repos.signingKeys.listPublished(NOW);
      expect(published.map((k) => k.kid).sort()).toEqual([k1, k2, k3].sort());
      expect(published.find((k) => k.kid === k1)?.lastExpiresAt).toEqual(at("2020-03-20T00:00:00Z"));
      expect(JSON.stringify(published)).not.toContain("v1.");

      const later = await repos.signingKeys.listPublished(at("2020-03-20T00:00:00Z"));
      expect(later.map((k) => k.kid).sort()).toEqual([k2, k3].sort());
      const jwks = await loadPublicKeys(db, at("2020-03-20T00:00:00Z"));
      expect(jwks.keys.find((k) => k.kid === k2)).toEqual(jwk(k2));
      expect(jwks.keys.map((k) => k.kid)).not.toContain(k1);
    });

    it("reads every link a revoked signing key signed as revoked: status, counts, filters and held links", async () => {
      const base = await fixture();
      const jwk = (kid: string) => ({ kty: "OKP", crv: "Ed25519", x: `x-${kid}`, kid });
      // Both retired (a revocation retires too), so neither becomes the active key of later tests.
      const leaked = randomId("kid");
      const kept = randomId("kid");
      for (const kid of [leaked, kept]) {
        await repos.signingKeys.insert({
          kid,
          publicJwk: jwk(kid),
          privateKeyEnc: "v1.a.b.c",
          createdAt: at("2019-06-01T00:00:00Z"),
        });
      }
      await repos.signingKeys.retire(kept, NOW);
      const t0 = at("2020-03-01T10:00:00Z");
      const rows = [
        link(base, { volunteerRef: "k-open", kid: leaked, issuedAt: t0 }),
        // Issued after the key's revocation is recorded: no watermark, the key alone decides.
        link(base, { volunteerRef: "k-late", kid: leaked, issuedAt: at("2020-03-01T13:00:00Z") }),
        link(base, {
          volunteerRef: "k-expired",
          kid: leaked,
          issuedAt: t0,
          expiresAt: at("2020-03-01T11:00:00Z"),
        }),
        link(base, { volunteerRef: "k-suspended", kid: leaked, issuedAt: t0 }),
        link(base, { volunteerRef: "k-spent", kid: leaked, issuedAt: t0, maxUses: 1 }),
        // A retired key still verifies: its link stays active.
        link(base, { volunteerRef: "retired", kid: kept, issuedAt: t0 }),
      ];
      await repos.links.insertMany(rows);
      const session = {
        id: randomId("ses"),
        tokenHash: sha256Hex(randomId("cred")),
        linkId: rows[0]!.id,
        deviceId: "dev_1",
        createdAt: NOW,
        expiresAt: at("2020-03-02T00:00:00Z"),
      };
      expect(await repos.links.redeem(rows[0]!.id, NOW, { session })).toMatchObject({ ok: true });
      await repos.links.suspend(rows[3]!.id, "too many devices", NOW);
      const spentSession = {
        ...session,
        id: randomId("ses"),
        tokenHash: sha256Hex(randomId("c")),
        linkId: rows[4]!.id,
      };
      await repos.links.redeem(rows[4]!.id, NOW, { session: spentSession });
      const before = { active: 3, revoked: 0, expired: 1, suspended: 1, exhausted: 1 };
      expect(await repos.links.countByStatus(base.campaignId, NOW)).toEqual(before);
      expect((await repos.links.getWithStatus(rows[0]!.id, NOW))?.activeSessions).toBe(1);
      // A one-use link in use reads exhausted, and its session (which works) is counted live.
      expect(await repos.links.getWithStatus(rows[4]!.id, NOW)).toMatchObject({
        status: "exhausted",
        activeSessions: 1,
      });
      expect(
        (await repos.links.progress(base.campaignId, undefined, NOW)).find((p) => p.ref === "k-spent"),
      ).toMatchObject({ opened: 1, activeSessions: 1 });

      expect(await repos.signingKeys.revoke(leaked, "private key leaked", NOW)).toMatchObject({
        status: "revoked",
      });
      const expected = ["revoked", "revoked", "revoked", "revoked", "revoked", "active"];
      const tally = { active: 0, revoked: 0, expired: 0, suspended: 0, exhausted: 0 };
      for (const [i, r] of rows.entries()) {
        const got = (await repos.links.getWithStatus(r.id, NOW))!;
        expect(got.status, r.volunteerRef).toBe(expected[i]);
        tally[got.status]++;
      }
      // Its session is refused with it: no longer counted live.
      expect(await repos.links.getWithStatus(rows[0]!.id, NOW)).toMatchObject({
        devices: 1,
        activeSessions: 0,
      });
      expect(await repos.links.countByStatus(base.campaignId, NOW)).toEqual(tally);
      expect(tally).toEqual({ active: 1, revoked: 5, expired: 0, suspended: 0, exhausted: 0 });

      const listed = async (status: "active" | "revoked" | "expired") =>
        (await repos.links.list({ campaignId: base.campaignId, status, limit: 50, now: NOW })).items
          .map((l) => [l.volunteerRef, l.status])
          .sort();
      expect(await listed("active")).toEqual([["retired", "active"]]);
      expect(await listed("revoked")).toEqual(
        ["k-expired", "k-late", "k-open", "k-spent", "k-suspended"].map((ref) => [ref, "revoked"]),
      );
      expect(await listed("expired")).toEqual([]);
      // A re-uploaded sheet issues anew to whoever holds only links of the revoked key.
      const held = await repos.links.activeByVolunteer(
        base.campaignId,
        "ballot",
        rows.map((r) => r.volunteerRef),
        NOW,
      );
      expect([...held.keys()]).toEqual(["retired"]);
      const progress = await repos.links.progress(base.campaignId, undefined, NOW);
      expect(progress.find((p) => p.ref === "k-open")).toMatchObject({ links: 1, activeLinks: 0, opened: 1 });
      expect(progress.find((p) => p.ref === "retired")).toMatchObject({ links: 1, activeLinks: 1 });
    });

    it("stores and pages through revocations", async () => {
      const campaignId = randomId("cmp");
      const before = await repos.policyState.current();
      const created = [];
      for (let i = 0; i < 5; i++) {
        const { version, revocation } = await repos.revocations.insert({
          scope: "campaign",
          campaignId,
          reason: `r${i}`,
          actor: "admin",
          effectiveAt: new Date(at("2030-01-01T00:00:00Z").getTime() + i * 1000),
        });
        expect(version).toBe(before + 1 + i);
        expect(revocation.id).toMatch(/^rev_/);
        created.push(revocation);
      }
      const first = await repos.revocations.list({ limit: 2 });
      expect(first.items.map((r) => r.reason)).toEqual(["r4", "r3"]);
      const second = await repos.revocations.list({ limit: 2, cursor: first.nextCursor });
      expect(second.items.map((r) => r.reason)).toEqual(["r2", "r1"]);
      const third = await repos.revocations.list({ limit: 2, cursor: second.nextCursor });
      expect(third.items[0]?.reason).toBe("r0");

      const all = await repos.revocations.all();
      expect(all.slice(-5)).toEqual(created);
      await expectCode(
        // @ts-expect-error a phase revocation needs a phase: the type refuses it as the store does
        repos.revocations.insert({
          scope: "phase",
          contestId: "c",
          reason: "x",
          actor: "admin",
          effectiveAt: NOW,
        }),
        "validation",
      );
      expect(await repos.policyState.current()).toBe(before + 5);
    });

    it("loads a consistent policy snapshot", async () => {
      const { contestId, campaignId } = await fixture();
      await repos.campaigns.upsert({
        id: campaignId,
        name: "Team",
        contestId,
        limits: { recordsPerHour: 200 },
      });
      await repos.entitlements.put(campaignId, "ballot", ["calls:read", "members:read"]);
      const { revocation } = await repos.revocations.insert({
        scope: "volunteer",
        volunteerRef: "vol-9",
        reason: "left",
        actor: "admin",
        effectiveAt: NOW,
      });

      const snapshot = await loadPolicySnapshot(db);
      expect(snapshot.version).toBe(await repos.policyState.current());
      expect(snapshot.contests.get(contestId)).toEqual(await repos.contests.get(contestId));
      expect(snapshot.contests.get(contestId)?.phases.map((p) => p.name)).toEqual(["nominations", "ballot"]);
      expect(snapshot.campaigns.get(campaignId)).toEqual({
        id: campaignId,
        name: "Team",
        contestId,
        limits: { recordsPerHour: 200 },
      });
      expect(snapshot.entitlements.get(campaignId)?.get("ballot")).toEqual(
        new Set<Scope>(["calls:read", "members:read"]),
      );
      expect(snapshot.revocations).toContainEqual(revocation);
    });

    it("holds suspended links in the policy snapshot", async () => {
      const base = await fixture();
      const [kept, suspended] = [link(base), link(base)];
      await repos.links.insertMany([kept, suspended]);
      await repos.links.suspend(suspended.id, "too many devices", NOW);
      const snapshot = await loadPolicySnapshot(db);
      expect(snapshot.version).toBe(await repos.policyState.current());
      expect(snapshot.suspended.has(suspended.id)).toBe(true);
      expect(snapshot.suspended.has(kept.id)).toBe(false);
    });

    it("sessions: resolved with their link by credential hash only, rotated, ended once (a policy write)", async () => {
      const base = await fixture();
      const l = link(base, { codeHash: `code-${randomId("h")}` });
      await repos.links.insertMany([l]);
      expect((await repos.links.getByCodeHash(l.codeHash!))?.id).toBe(l.id);
      const now = at("2020-03-11T00:00:00Z");
      const id = randomId("ses");
      await repos.sessions.open({
        id,
        tokenHash: "hash-1",
        linkId: l.id,
        deviceId: "dev_a",
        createdAt: now,
        expiresAt: at("2020-03-11T12:00:00Z"),
      });
      const resolved = await repos.sessions.resolve("hash-1");
      expect(resolved?.session.id).toBe(id);
      expect(resolved?.link).toMatchObject({ id: l.id, kid: "kid-1", scopes: ["calls:read", "calls:write"] });
      expect(resolved?.session).not.toHaveProperty("tokenHash");
      expect((await repos.sessions.findLive(l.id, "dev_a", now))?.id).toBe(id);
      expect(await repos.sessions.findLive(l.id, "dev_b", now)).toBeNull();
      expect(await repos.sessions.findLive(l.id, "dev_a", at("2020-03-11T12:00:00Z"))).toBeNull();
      expect((await repos.sessions.countActive([l.id], now)).get(l.id)).toBe(1);

      const beforeRotate = await repos.policyState.current();
      expect(await repos.sessions.rotate(id, "hash-2", now)).toBe(true);
      expect(await repos.sessions.resolve("hash-1")).toBeNull();
      // Other gateways' caches hold the old credential: the rotation moves the version and is logged.
      const before = await repos.policyState.current();
      expect(before).toBe(beforeRotate + 1);
      const logged = await loadPolicyChanges(db, beforeRotate, 10);
      expect(logged.changes.map((c) => c.change)).toEqual([{ type: "session-rotated", sessionId: id }]);
      const ended = await repos.sessions.end("hash-2", "signed out", now);
      expect(ended).toEqual({ id, version: before + 1 });
      expect(await repos.sessions.end("hash-2", "again", now)).toBeNull();
      expect((await repos.sessions.resolve("hash-2"))?.session.endedAt).toEqual(now);
      expect(await repos.sessions.rotate(id, "hash-3", now)).toBe(false);
      expect((await repos.sessions.countActive([l.id], now)).get(l.id)).toBeUndefined();
    });

    it("a shared gateway secret is created once and read back by everyone", async () => {
      const name = randomId("secret");
      const [a, b] = await Promise.all([
        sharedGatewaySecret(db, name, () => "first"),
        sharedGatewaySecret(db, name, () => "second"),
      ]);
      expect(a).toBe(b);
      expect(await sharedGatewaySecret(db, name, () => "third")).toBe(a);
    });
  });
}
