/**
 * Migration 0006 adds `audit_events.leaf_hash`: on a database that already holds events it must
 * backfill each event's leaf hash (the same bytes the writer hashes), and refuse a chain whose
 * rows no longer match their own hashes rather than anchor a rewritten log in the tree.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MIGRATIONS_FOLDER, migrate, queryRows } from "@phaselock/db";
import { dbBackends } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { canonicalPrepared, chainHash, GENESIS, prepareEvent } from "./chain.ts";
import { eventLeafHash } from "./leaf.ts";
import { leafHash, toHex } from "./merkle.ts";
import { readLeafHashes, streamEvents } from "./store.ts";

let before0006: string;

beforeAll(() => {
  // The committed migrations up to 0005, in a folder of their own.
  before0006 = mkdtempSync(join(tmpdir(), "pl-mig-"));
  cpSync(MIGRATIONS_FOLDER, before0006, { recursive: true });
  const journalPath = join(before0006, "meta", "_journal.json");
  const journal = JSON.parse(readFileSync(journalPath, "utf8")) as { entries: { tag: string }[] };
  journal.entries = journal.entries.filter((e) => e.tag < "0006");
  writeFileSync(journalPath, JSON.stringify(journal));
});

afterAll(() => rmSync(before0006, { recursive: true, force: true }));

/** Events as the pre-0006 writer stored them: the chain columns, no leaf hash. */
const oldEvents = [
  {
    type: "link.issued",
    at: new Date("2026-01-01T09:00:00.123Z"),
    actor: "key_1",
    campaignId: "c-1",
    linkId: "lnk_1",
    decision: "allow" as const,
    data: {
      volunteerRef: 'vol "1"\n',
      scopes: ["calls:read"],
      maxUses: 3,
      nested: { b: 1, a: [true, null, 1.5] },
    },
  },
  {
    type: "access",
    at: new Date("2026-01-01T09:00:01Z"),
    decision: "deny" as const,
    reason: "revoked",
    data: { route: "GET /l/:token", ipHash: null, zé: "ünïcode ✓", "": -7 },
  },
  { type: "audit.dropped", at: new Date("2026-01-01T09:00:02Z"), data: {} },
];

for (const backend of dbBackends) {
  describeIntegration(`migration 0006 on a log with events (${backend.name})`, backend.needs, () => {
    const seed = async (tamper: boolean) => {
      const db = await backend.open({ migrate: false });
      await migrate(db.handle, { migrationsFolder: before0006 });
      let prev = GENESIS;
      for (const [i, input] of oldEvents.entries()) {
        const p = prepareEvent(input);
        const seq = i + 1;
        const id = `evt_old${seq}`;
        const hash = chainHash(prev, canonicalPrepared(p, seq, id));
        const data =
          tamper && seq === 2 ? JSON.stringify({ ...JSON.parse(p.dataJson), route: "GET /" }) : p.dataJson;
        await db.handle.db.execute(sql`insert into audit_events
          (seq, id, at, type, actor, campaign_id, link_id, decision, reason, data, prev_hash, hash)
          values (${seq}, ${id}, ${p.atIso}::timestamptz, ${p.type}, ${p.actor}, ${p.campaignId}, ${p.linkId},
            ${p.decision}, ${p.reason}, ${data}::jsonb, ${prev}, ${hash})`);
        prev = hash;
      }
      return db;
    };

    it("backfills every stored event's leaf hash with the writer's bytes", async () => {
      const db = await seed(false);
      try {
        await migrate(db.handle);
        const stored = [];
        for await (const e of streamEvents(db.handle.db)) stored.push(e);
        expect(stored).toHaveLength(3);
        const leaves = await readLeafHashes(db.handle.db, 0, 3);
        expect(leaves.map(toHex)).toEqual(stored.map((e) => toHex(eventLeafHash(e))));
        const p = prepareEvent(oldEvents[0]!);
        expect(toHex(leaves[0]!)).toBe(toHex(leafHash(Buffer.from(canonicalPrepared(p, 1, "evt_old1")))));
        // Still append-only afterwards.
        await expect(db.handle.db.execute(sql`delete from audit_events`)).rejects.toThrow();
        const [{ n } = { n: -1 }] = await queryRows<{ n: number }>(
          db.handle.db,
          sql`select count(*)::int as n from audit_events where leaf_hash is null`,
        );
        expect(n).toBe(0);
      } finally {
        await db.drop();
      }
    });

    it("refuses to migrate a log whose rows no longer match their chain hashes", async () => {
      const db = await seed(true);
      try {
        await expect(migrate(db.handle)).rejects.toThrow();
        const [{ ok } = { ok: true }] = await queryRows<{ ok: boolean }>(
          db.handle.db,
          sql`select to_regclass('public.audit_checkpoints') is not null as ok`,
        );
        expect(ok).toBe(false);
      } finally {
        await db.drop();
      }
    });
  });
}

describe("migration 0006 text", () => {
  it("no longer adds a NOT NULL column without a backfill", () => {
    const text = readFileSync(join(MIGRATIONS_FOLDER, "0006_audit_tree.sql"), "utf8");
    expect(text).not.toMatch(/ADD COLUMN "leaf_hash" text NOT NULL/);
  });
});
