import { FakeClock } from "@phaselock/core";
import { type Db, queryRows } from "@phaselock/db";
import { createMemoryDb } from "@phaselock/db/testing";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { sampleInput } from "./test-chain.ts";
import { AuditQueueFullError, BatchAuditWriter } from "./writer.ts";

const count = async (db: Db) =>
  (await queryRows<{ n: number }>(db, sql`select count(*)::int as n from audit_events`))[0]?.n ?? 0;

describe("BatchAuditWriter.recordDurable (group commit)", () => {
  let handle: Awaited<ReturnType<typeof createMemoryDb>>;
  beforeAll(async () => {
    handle = await createMemoryDb();
  });
  afterAll(() => handle.close());

  it("resolves only once the event is committed, many callers sharing one insert", async () => {
    const db = handle.db;
    // A batching interval far longer than the test: only the linger can have written them.
    const w = new BatchAuditWriter({ db, clock: new FakeClock(), flushIntervalMs: 60_000, lingerMs: 1 });
    const before = await count(db);
    const denial = sampleInput(0);
    w.record(denial as never);
    const durable = Array.from({ length: 20 }, (_, i) => w.recordDurable(sampleInput(i + 1) as never));
    let settled = 0;
    for (const p of durable) void p.then(() => settled++);
    expect(settled).toBe(0);
    await Promise.all(durable);
    // Every durable event is in the table when its promise resolves, the queued denial with them.
    expect(await count(db)).toBe(before + 21);
    const [tx] = await queryRows<{ n: number }>(
      db,
      sql`select count(distinct xmin::text)::int as n from audit_events where seq > ${before}`,
    );
    expect(tx?.n).toBe(1);
    await w.close();
  });

  it("rejects when the event cannot be written, so the answer is refused", async () => {
    const broken = await createMemoryDb();
    await broken.close();
    const w = new BatchAuditWriter({
      db: broken.db,
      clock: new FakeClock(),
      lingerMs: 0,
      maxBackoffMs: 60_000,
      onError: () => {},
    });
    await expect(w.recordDurable(sampleInput(0) as never)).rejects.toBeDefined();
  });

  it("rejects at once when the queue is full, and counts the dropped denials in audit.dropped", async () => {
    const db = handle.db;
    const errors: unknown[] = [];
    const w = new BatchAuditWriter({
      db,
      clock: new FakeClock(),
      flushIntervalMs: 60_000,
      maxQueue: 2,
      onError: (e) => errors.push(e),
    });
    w.record(sampleInput(0) as never);
    w.record(sampleInput(1) as never);
    w.record(sampleInput(2) as never);
    await expect(w.recordDurable(sampleInput(3) as never)).rejects.toBeInstanceOf(AuditQueueFullError);
    expect(w.healthy(new Date())).toBe(false);
    await w.close();
    const [dropped] = await queryRows<{ data: { count: number } }>(
      db,
      sql`select data from audit_events where type = 'audit.dropped' order by seq desc limit 1`,
    );
    expect(dropped?.data.count).toBe(1);
  });
});
