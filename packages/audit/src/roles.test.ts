/**
 * The services' database role, exactly as the README's "Database roles" block sets it up, seen by
 * an attacker who holds it (issue 12, items 3 and 6): it appends events, and can neither rewrite
 * them nor pick the month partition a row lands in (a row put in an older or later month breaks
 * the "month never decreases along seq" rule that retention relies on, and, with the primary key
 * `(seq, partition_month)`, could repeat a seq), nor write audit_archives.
 */
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { assertMigrated, createDb, type Db, SERVICES_GRANTS_SQL } from "@phaselock/db";
import { createTestDatabase, type TestDatabase } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, expect, it } from "vitest";
import { prepareEvent } from "./chain.ts";
import { appendInTransaction, appendPrepared, readLeafHashes, verifyStored } from "./store.ts";
import { sampleInput } from "./test-chain.ts";

const README = fileURLToPath(new URL("../../../README.md", import.meta.url));

/** The SQL block of the README's "Database roles" section. */
async function rolesSql(): Promise<string> {
  const text = await readFile(README, "utf8");
  const section = text.slice(text.indexOf("### Database roles"));
  const m = /```sql\n([\s\S]*?)```/.exec(section);
  if (!m) throw new Error("README: no SQL block under Database roles");
  return m[1]!;
}

/** Postgres' message for a failed statement run as `role` (drizzle wraps it as the cause). */
async function failureAs(
  db: Db,
  role: string,
  statement: ReturnType<typeof sql>,
): Promise<string | undefined> {
  return db
    .transaction(async (tx) => {
      await tx.execute(sql.raw(`set local role "${role}"`));
      await tx.execute(statement);
    })
    .then(
      () => undefined,
      (e: Error & { cause?: Error }) => e.cause?.message ?? e.message,
    );
}

const COMPOSE_SQL = fileURLToPath(new URL("../../../infra/db/services-role.sql", import.meta.url));

it("infra/compose.yaml and `db:migrate --grant` give the services' role the README's block, verbatim after CREATE ROLE", async () => {
  // compose's db-roles runs the file with psql (the password from its environment), and k8s's
  // migration `db:migrate --grant` (packages/db/src/grants.ts); the block this file tests is the
  // README's, so none may drift.
  const block = await rolesSql();
  const [create, ...rest] = block.split("\n");
  expect(create).toMatch(/^CREATE ROLE phaselock_app LOGIN PASSWORD/);
  expect(SERVICES_GRANTS_SQL).toBe(rest.join("\n"));
  const file = await readFile(COMPOSE_SQL, "utf8");
  expect(file).toContain(rest.join("\n"));
  expect(file).toMatch(/ALTER ROLE phaselock_app LOGIN PASSWORD :'app_password';/);
});

describeIntegration("the services' database role from the README", ["postgres"], () => {
  let testDb: TestDatabase;
  let db: Db;
  const role = `pl_app_${randomBytes(6).toString("hex")}`;

  beforeAll(async () => {
    testDb = await createTestDatabase();
    db = testDb.handle.db;
    const block = (await rolesSql())
      .replaceAll("phaselock_app", role)
      .replace(/PASSWORD '[^']*'/, "PASSWORD 'test-only'");
    await db.execute(sql.raw(block));
  });
  afterAll(async () => {
    await db?.execute(sql.raw(`drop owned by "${role}"`)).catch(() => {});
    await db?.execute(sql.raw(`drop role if exists "${role}"`)).catch(() => {});
    await testDb?.drop();
  });

  it("appends events through the services' own insert", async () => {
    const result = await db.transaction(async (tx) => {
      await tx.execute(sql.raw(`set local role "${role}"`));
      return appendInTransaction(tx, [sampleInput(0), sampleInput(1)]);
    });
    expect(result.headSeq).toBe(2);
    expect(await readLeafHashes(db, 0, 2)).toHaveLength(2);
  });

  it("passes the services' start-up check that the database is migrated, connected as the role", async () => {
    // Every service calls assertMigrated before it serves; it reads drizzle's own table.
    const u = new URL(testDb.url);
    u.username = role;
    u.password = "test-only";
    const own = createDb({ databaseUrl: u.toString(), poolSize: 1 });
    try {
      await expect(assertMigrated(own.db)).resolves.toBeUndefined();
    } finally {
      await own.close();
    }
  });

  it("appends through audit_append() in one round trip, as the batch writer does, connected as the role", async () => {
    const u = new URL(testDb.url);
    u.username = role;
    u.password = "test-only";
    const own = createDb({ databaseUrl: u.toString(), poolSize: 1 });
    try {
      const before = await appendPrepared(own.db, []);
      const head = { seq: before.headSeq, hash: before.head };
      const r = await appendPrepared(own.db, [sampleInput(10), sampleInput(11)].map(prepareEvent), head);
      expect(r.firstSeq).toBe(head.seq + 1);
      expect(r.headSeq).toBe(head.seq + 2);
      // The guard: a head that is no longer the newest writes nothing through the function, and
      // the append still lands, chained on the real head.
      const again = await appendPrepared(own.db, [sampleInput(12)].map(prepareEvent), head);
      expect(again.firstSeq).toBe(r.headSeq + 1);
      expect(await verifyStored(db)).toMatchObject({ ok: true, events: again.headSeq });
    } finally {
      await own.close();
    }
  });

  it("keeps partitions ahead and verifies the log (SECURITY DEFINER, SELECT on audit_archives)", async () => {
    const made = await db.transaction(async (tx) => {
      await tx.execute(sql.raw(`set local role "${role}"`));
      const ensured = await tx.execute(sql`select audit_events_ensure_partitions(4) as made`);
      const verified = await verifyStored(tx);
      return { ensured, verified };
    });
    expect(made.verified).toMatchObject({ ok: true });
    expect(await failureAs(db, role, sql`select audit_events_partition('2031-01-01'::date)`)).toMatch(
      /permission denied/,
    );
  });

  it("cannot choose the month partition a row lands in", async () => {
    const message = await failureAs(
      db,
      role,
      sql`insert into audit_events (seq, id, at, type, data, prev_hash, hash, leaf_hash, partition_month)
          select 1, 'evt_dup', now(), 'x', '{}'::jsonb, p.prev_hash, p.hash, p.leaf_hash, '2020-01-01'
            from audit_events p where p.seq = 1`,
    );
    expect(message).toMatch(/permission denied/);
  });

  it("calls our audit_append() even when an overload that would match bare integers exists", async () => {
    // What a role with CREATE on schema public (the default before Postgres 15) could add.
    await db.execute(
      sql.raw(`create function public.audit_append(
        lock_key bigint, expected_seq integer, expected_hash text, p_seq bigint[], p_id text[],
        p_at timestamptz[], p_type text[], p_actor text[], p_campaign_id text[], p_link_id text[],
        p_decision text[], p_reason text[], p_data jsonb[], p_prev_hash text[], p_hash text[],
        p_leaf_hash text[]) returns table (head_seq text, head_hash text) language plpgsql
        as $$ begin raise exception 'the overload was called'; end $$`),
    );
    try {
      const before = await appendPrepared(db, []);
      const r = await appendPrepared(db, [prepareEvent(sampleInput(40))], {
        seq: before.headSeq,
        hash: before.head,
      });
      expect(r.firstSeq).toBe(before.headSeq + 1);
      expect(await verifyStored(db)).toMatchObject({ ok: true, events: r.headSeq });
    } finally {
      await db.execute(
        sql.raw(`drop function public.audit_append(bigint, integer, text, bigint[], text[], timestamptz[],
          text[], text[], text[], text[], text[], text[], jsonb[], text[], text[], text[])`),
      );
    }
  });

  it("cannot replace audit_append() with one that reports rows it did not write", async () => {
    const message = await failureAs(
      db,
      role,
      sql.raw(`create or replace function public.audit_append(
        lock_key bigint, expected_seq bigint, expected_hash text, p_seq bigint[], p_id text[],
        p_at timestamptz[], p_type text[], p_actor text[], p_campaign_id text[], p_link_id text[],
        p_decision text[], p_reason text[], p_data jsonb[], p_prev_hash text[], p_hash text[],
        p_leaf_hash text[]) returns table (head_seq text, head_hash text) language sql
        as $$ select p_seq[array_length(p_seq, 1)]::text, p_hash[array_length(p_hash, 1)] $$`),
    );
    expect(message).toMatch(/must be owner|permission denied/);
  });

  it("cannot update, delete, truncate, or write audit_archives", async () => {
    for (const statement of [
      sql`update audit_events set reason = 'x' where seq = 1`,
      sql`delete from audit_events where seq = 2`,
      sql`truncate audit_events`,
      sql`insert into audit_archives (from_seq, to_seq, head, months, checkpoint_size, file_sha256, archived_at)
          values (1, 2, 'h', '[]'::jsonb, 2, 's', now())`,
    ]) {
      expect(await failureAs(db, role, statement)).toMatch(/permission denied|refuse|append-only/i);
    }
  });
});
