import { canonicalEvent, chainHash, GENESIS, type StoredEvent } from "./chain.ts";
import type { AuditEventInput } from "./sink.ts";

// Fixtures shared by this package's tests (not exported from the package).

const T0 = Date.parse("2026-01-01T00:00:00.000Z");

/** The i-th synthetic input event: every column set, values varied. */
export function sampleInput(i: number, t0 = T0): AuditEventInput {
  return {
    type: i % 7 === 0 ? "link.issued" : "access",
    at: new Date(t0 + i * 1_000),
    actor: `vol-${i % 5}`,
    campaignId: i % 2 === 0 ? "starmer-2020" : "long-bailey-2020",
    linkId: `lnk_${i % 3}`,
    decision: i % 4 === 0 ? "deny" : "allow",
    reason: i % 4 === 0 ? "scope_denied" : `ok-${i}`,
    data: { path: `/members/${i}`, n: i, nested: { b: [i, "x"], a: null } },
  };
}

/** Recomputes an event's hash, over `prevHash` (default its own). */
export function rehash(e: StoredEvent, prevHash = e.prevHash): StoredEvent {
  return { ...e, prevHash, hash: chainHash(prevHash, canonicalEvent(e)) };
}

/** A valid in-memory chain of `n` events from seq 1. */
export function buildChain(n: number): StoredEvent[] {
  const out: StoredEvent[] = [];
  let prev = GENESIS;
  for (let i = 0; i < n; i++) {
    const input = sampleInput(i);
    const e = rehash(
      {
        seq: i + 1,
        id: `evt_${i}`,
        at: input.at,
        type: input.type,
        actor: input.actor ?? null,
        campaignId: input.campaignId ?? null,
        linkId: input.linkId ?? null,
        decision: input.decision ?? null,
        reason: input.reason ?? null,
        data: input.data ?? {},
        prevHash: prev,
        hash: "",
      },
      prev,
    );
    out.push(e);
    prev = e.hash;
  }
  return out;
}
