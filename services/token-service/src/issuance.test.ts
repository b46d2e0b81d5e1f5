import { treeSize } from "@phaselock/audit";
import { PhaselockError } from "@phaselock/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Principal } from "./context.ts";
import { issuedLinksCsv, issueLinks, signingBatch } from "./issuance.ts";
import {
  ADMIN_PRINCIPAL,
  createHarness,
  type Harness,
  openPhaseRequest,
  seedOpen,
  verifierFor,
} from "./test-support.ts";

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, 60_000);
afterAll(() => h.close());

const admin = ADMIN_PRINCIPAL;
const request = openPhaseRequest;

// Issuance is called with deps and a principal, no HTTP request: what a job or CLI would do.
describe("issueLinks", () => {
  it("signs, stores and audits links without a Hono context", async () => {
    const { campaignId } = await seedOpen(h);
    const before = h.audit.events.length;
    const links = await issueLinks(
      h.deps,
      { principal: admin, requestId: "req_direct" },
      request(campaignId, ["a", "b"]),
    );
    expect(links.map((l) => l.volunteer.ref)).toEqual(["a", "b"]);
    const verifier = await verifierFor(h);
    for (const l of links) {
      expect(await h.deps.repos.links.get(l.id)).toMatchObject({ campaignId, maxUses: 2, issuedBy: "admin" });
      expect(await verifier.verify(l.token)).toMatchObject({
        ok: true,
        claims: { jti: l.id, cmp: campaignId },
      });
    }
    const events = h.audit.events.slice(before);
    expect(events.map((e) => e.type)).toEqual(["link.issued", "link.issued", "links.batch_issued"]);
    // Each link's event names the batch; the terms the batch's links share are written once.
    const batch = events[2]!.data as Record<string, unknown>;
    expect(batch).toMatchObject({
      count: 2,
      phase: "open",
      scopes: ["calls:read"],
      notBefore: links[0]!.notBefore,
      expiresAt: links[0]!.expiresAt,
      maxUses: 2,
      kid: h.deps.keys.signer().kid,
    });
    expect(events.slice(0, 2).map((e) => [e.linkId, e.data])).toEqual(
      links.map((l) => [
        l.id,
        { requestId: "req_direct", volunteerRef: l.volunteer.ref, batchId: batch.batchId },
      ]),
    );
    expect(events.every((e) => e.actor === "admin" && e.data.requestId === "req_direct")).toBe(true);
    expect(issuedLinksCsv(links).split("\r\n")[0]).toBe("ref,name,id,url,notBefore,expiresAt,status");
  });

  it("refuses another campaign's coordinator with forbidden, issuing nothing", async () => {
    const { campaignId } = await seedOpen(h);
    const other: Principal = { role: "coordinator", actor: "key_x", campaignId: "someone-else" };
    const err = await issueLinks(
      h.deps,
      { principal: other, requestId: "r" },
      request(campaignId, ["c"]),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PhaselockError);
    expect((err as PhaselockError).code).toBe("forbidden");
  });

  it("a signing failure, though signing overlaps the inserts and the append, leaves no link and no event", async () => {
    const { campaignId } = await seedOpen(h);
    // The table, not the in-memory mirror: the events are appended before the signatures are
    // awaited, so only the rollback keeps them out.
    const before = await treeSize(h.handle.db);
    const keys = h.deps.keys;
    const signer = keys.signer();
    const original = keys.signer;
    keys.signer = () => ({ ...signer, signMany: () => Promise.reject(new Error("signing failed")) });
    try {
      const err = await issueLinks(
        h.deps,
        { principal: admin, requestId: "r" },
        request(campaignId, ["d", "e"]),
      ).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toBe("signing failed");
    } finally {
      keys.signer = original;
    }
    expect((await h.deps.repos.links.list({ campaignId, limit: 10, now: new Date() })).items).toEqual([]);
    expect(await treeSize(h.handle.db)).toBe(before);
  });

  it("appends the links' events while they are being signed: only the commit waits for the tokens", async () => {
    const { campaignId } = await seedOpen(h);
    const keys = h.deps.keys;
    const signer = keys.signer();
    const original = keys.signer;
    const journal = h.deps.journal;
    const append = journal.append;
    const order: string[] = [];
    let appended!: () => void;
    const eventsWritten = new Promise<void>((resolve) => {
      appended = resolve;
    });
    journal.append = async (tx, events) => {
      await append(tx, events);
      order.push("events appended");
      appended();
    };
    // The signatures come only once the events are in: an append that waited for them never would.
    keys.signer = () => ({
      ...signer,
      signMany: async (shared, subjects) => {
        const tokens = await signer.signMany(shared, subjects);
        await eventsWritten;
        order.push("links signed");
        return tokens;
      },
    });
    try {
      const links = await issueLinks(
        h.deps,
        { principal: admin, requestId: "r" },
        request(campaignId, ["f", "g"]),
      );
      expect(links.map((l) => l.volunteer.ref)).toEqual(["f", "g"]);
      const verifier = await verifierFor(h);
      for (const l of links) {
        expect(await verifier.verify(l.token)).toMatchObject({ ok: true, claims: { jti: l.id } });
      }
    } finally {
      keys.signer = original;
      journal.append = append;
    }
    expect(order).toEqual(["events appended", "links signed"]);
  }, 10_000);

  it("waits for its own signatures before the append while another batch is signing in this process", async () => {
    const { campaignId } = await seedOpen(h);
    const keys = h.deps.keys;
    const signer = keys.signer();
    const originalSigner = keys.signer;
    const recordIssued = keys.recordIssued;
    const journal = h.deps.journal;
    const append = journal.append;
    // Another batch's signing, still queued in the pool.
    let releaseOther!: () => void;
    const other = signingBatch(
      new Promise<void>((resolve) => {
        releaseOther = resolve;
      }),
    );
    let releaseOwn!: () => void;
    const ownGate = new Promise<void>((resolve) => {
      releaseOwn = resolve;
    });
    let reachedAppend!: () => void;
    const atAppend = new Promise<void>((resolve) => {
      reachedAppend = resolve;
    });
    let signed = false;
    let appendedUnsigned = false;
    keys.signer = () => ({
      ...signer,
      signMany: async (shared, subjects) => {
        const tokens = await signer.signMany(shared, subjects);
        await ownGate;
        signed = true;
        return tokens;
      },
    });
    // The last statement before the events: from here only the append is left.
    keys.recordIssued = async (...args) => {
      const recorded = await recordIssued.apply(keys, args);
      reachedAppend();
      return recorded;
    };
    journal.append = async (tx, events) => {
      if (!signed) appendedUnsigned = true;
      await append(tx, events);
    };
    try {
      const issuing = issueLinks(h.deps, { principal: admin, requestId: "r" }, request(campaignId, ["h"]));
      await atAppend;
      // Every step to the append is in memory from here: let them run before the tokens come.
      await new Promise((resolve) => setImmediate(resolve));
      releaseOwn();
      const links = await issuing;
      expect(links.map((l) => l.volunteer.ref)).toEqual(["h"]);
    } finally {
      releaseOwn();
      releaseOther();
      await other;
      keys.signer = originalSigner;
      keys.recordIssued = recordIssued;
      journal.append = append;
    }
    expect(appendedUnsigned).toBe(false);
  });
});
