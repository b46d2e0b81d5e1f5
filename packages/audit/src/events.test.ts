import { describe, expect, it } from "vitest";
import type { AuditEvent, AuditEventType } from "./events.ts";
import { type AuditSink, MemoryAuditSink } from "./sink.ts";

const at = new Date("2026-01-01T00:00:00Z");

// These cases are checked by `pnpm typecheck`: each `@ts-expect-error` fails the build once the
// catalogue would accept the event below it.
describe("the audit event catalogue", () => {
  it("takes an event of the catalogue", () => {
    const sink: AuditSink = new MemoryAuditSink();
    sink.record({
      type: "access",
      at,
      actor: "vol-1",
      campaignId: "starmer-2020",
      linkId: "lnk_1",
      decision: "deny",
      reason: "scope_denied",
      data: { route: "GET /members/1", ipHash: null },
    });
    expect((sink as MemoryAuditSink).events.map((e) => e.type)).toEqual(["access"]);
  });

  it("refuses an event type nobody declared", () => {
    const sink = new MemoryAuditSink();
    // @ts-expect-error not an event of the catalogue
    sink.record({ type: "link.teleported", at, data: {} });
    const made: AuditEventType[] = ["access", "link.issued", "revocation.created", "contest.replaced"];
    // @ts-expect-error not an event type
    made.push("made.up");
    expect(made).toHaveLength(5);
  });

  it("refuses an event that leaves out a field its type requires", () => {
    const missingData = {
      type: "key.rotated",
      at,
      data: { kid: "k2", previousKid: "k1" },
    } as const;
    // @ts-expect-error key.rotated needs data.version
    const e1: AuditEvent = missingData;
    const missingColumn = {
      type: "entitlement.granted",
      at,
      data: { phase: "ballot", scopes: ["calls:read"], version: 3 },
    } as const;
    // @ts-expect-error entitlement.granted needs its campaignId
    const e2: AuditEvent = missingColumn;
    const wrongDecision = {
      type: "link.redeemed",
      at,
      actor: "vol-1",
      campaignId: "c",
      linkId: "lnk_1",
      decision: "deny",
      data: { ipHash: null, uses: 1 },
    } as const;
    // @ts-expect-error a redemption event is always an allow
    const e3: AuditEvent = wrongDecision;
    expect([e1, e2, e3].map((e) => e.type)).toEqual(["key.rotated", "entitlement.granted", "link.redeemed"]);
  });
});
