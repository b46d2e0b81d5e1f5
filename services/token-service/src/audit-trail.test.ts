import { randomBytes } from "node:crypto";
import { appendEvents, Checkpointer } from "@phaselock/audit";
import { FakeClock } from "@phaselock/core";
import type { PgliteHandle } from "@phaselock/db";
import { createMemoryDb } from "@phaselock/db/testing";
import { sql } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AuditKeyMissingError, loadAuditSigner } from "./audit-trail.ts";

const ORIGIN = "tokens.test/audit";

describe("the audit key at start", () => {
  let handle: PgliteHandle;
  const kek = new Uint8Array(randomBytes(32));
  beforeEach(async () => {
    handle = await createMemoryDb();
  });
  afterEach(async () => {
    await handle.close();
  });

  it("is created once for a new log and loaded after", async () => {
    const first = await loadAuditSigner(handle.db, kek, ORIGIN);
    const again = await loadAuditSigner(handle.db, kek, ORIGIN);
    expect(again.verifierKey).toBe(first.verifierKey);
  });

  it("refuses an origin the log was not started under, saying which setting moved it and what it holds", async () => {
    const { signer } = await loadAuditSigner(handle.db, kek, ORIGIN);
    const clock = new FakeClock("2026-01-01T08:00:00Z");
    await appendEvents(handle.db, [{ type: "audit.test", at: clock.now() }]);
    expect(
      await new Checkpointer({ db: handle.db, signer, clock, dir: undefined }).checkpoint(),
    ).not.toBeNull();
    // As after an upgrade that derives TOKEN_SERVICE_URL from TOKEN_SERVICE_PORT (4100 here).
    const err = await loadAuditSigner(handle.db, kek, "127.0.0.1:4100/audit").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AuditKeyMissingError);
    expect((err as Error).message).toContain("TOKEN_SERVICE_URL");
    expect((err as Error).message).toContain(`(audit_keys holds: ${ORIGIN})`);
  });

  it("refuses to start (no new key) when checkpoints exist but their key's row is gone", async () => {
    const { signer } = await loadAuditSigner(handle.db, kek, ORIGIN);
    const clock = new FakeClock("2026-01-01T09:00:00Z");
    await appendEvents(handle.db, [{ type: "audit.test", at: clock.now() }]);
    const cp = new Checkpointer({ db: handle.db, signer, clock, dir: undefined });
    expect(await cp.checkpoint()).not.toBeNull();
    await handle.db.execute(sql`delete from audit_keys`);

    await expect(loadAuditSigner(handle.db, kek, ORIGIN)).rejects.toThrow(AuditKeyMissingError);
    await expect(loadAuditSigner(handle.db, kek, ORIGIN)).rejects.toThrow(/restore the audit_keys row/);
    // … and an origin changed under an existing log is the same refusal.
    await expect(loadAuditSigner(handle.db, kek, "other.test/audit")).rejects.toThrow(AuditKeyMissingError);
    const rows = await handle.db.execute(sql`select count(*)::int as n from audit_keys`);
    expect((rows as unknown as { rows: { n: number }[] }).rows[0]?.n).toBe(0);
  });
});
