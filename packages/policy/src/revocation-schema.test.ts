import { describe, expect, it } from "vitest";
import { z } from "zod";
import {
  REVOCATION_FIELDS,
  REVOCATION_RULES,
  REVOCATION_SCOPES,
  type RevocationField,
  type RevocationScope,
  revocationRecordSchema,
  revocationSchema,
} from "./revocation-schema.ts";

const id = z.string().min(1);
const input = revocationSchema({
  fields: { linkId: id, volunteerRef: id, campaignId: id, contestId: id, phase: id },
  extra: { reason: z.string() },
  form: "input",
});

const base = { reason: "r", actor: "admin", id: "rev_1", effectiveAt: new Date(0) };
const value = (f: RevocationField) => `${f}-1`;

/** Every scope's fields as the table says: required, optional (caller), recorded (service only). */
const TABLE: Array<[RevocationScope, RevocationField[], RevocationField[], RevocationField[]]> = [
  ["link", ["linkId"], ["campaignId"], ["contestId"]],
  ["volunteer", ["volunteerRef"], ["campaignId"], []],
  ["campaign", ["campaignId"], [], []],
  ["phase", ["contestId", "phase"], [], []],
  ["contest", ["contestId"], [], []],
  ["all", [], [], []],
];

describe("the revocation schema", () => {
  it("covers every scope, in the table this test pins", () => {
    expect(TABLE.map(([s]) => s)).toEqual([...REVOCATION_SCOPES]);
    for (const [scope, required, optional, recorded] of TABLE) {
      expect(REVOCATION_RULES[scope]).toEqual({ required, optional, recorded });
    }
  });

  describe.each(TABLE)("%s", (scope, required, optional, recorded) => {
    const full = Object.fromEntries(required.map((f) => [f, value(f)]));
    const unused = REVOCATION_FIELDS.filter((f) => ![...required, ...optional, ...recorded].includes(f));

    it("accepts exactly its required fields, in both forms", () => {
      expect(input.safeParse({ scope, reason: "r", ...full }).success).toBe(true);
      expect(revocationRecordSchema.safeParse({ scope, ...base, ...full }).success).toBe(true);
    });

    it.each(required)("refuses it without %s, in both forms", (f) => {
      const without = { ...full, [f]: undefined };
      expect(input.safeParse({ scope, reason: "r", ...without }).success).toBe(false);
      expect(revocationRecordSchema.safeParse({ scope, ...base, ...without }).success).toBe(false);
      expect(revocationRecordSchema.safeParse({ scope, ...base, ...full, [f]: "" }).success).toBe(false);
      expect(revocationRecordSchema.safeParse({ scope, ...base, ...full, [f]: null }).success).toBe(false);
    });

    it.each(optional)("takes %s from a caller, and null when stored", (f) => {
      expect(input.safeParse({ scope, reason: "r", ...full, [f]: value(f) }).success).toBe(true);
      expect(input.safeParse({ scope, reason: "r", ...full, [f]: null }).success).toBe(false);
      expect(revocationRecordSchema.safeParse({ scope, ...base, ...full, [f]: null }).success).toBe(true);
    });

    it.each(recorded)("refuses %s from a caller, keeps it when stored", (f) => {
      expect(input.safeParse({ scope, reason: "r", ...full, [f]: value(f) }).success).toBe(false);
      expect(revocationRecordSchema.safeParse({ scope, ...base, ...full, [f]: value(f) }).success).toBe(true);
    });

    it.each(unused)("refuses %s in both forms; a stored one may hold null", (f) => {
      expect(input.safeParse({ scope, reason: "r", ...full, [f]: value(f) }).success).toBe(false);
      expect(revocationRecordSchema.safeParse({ scope, ...base, ...full, [f]: value(f) }).success).toBe(
        false,
      );
      expect(revocationRecordSchema.safeParse({ scope, ...base, ...full, [f]: null }).success).toBe(true);
    });
  });

  it.each([
    ["an unknown scope", { scope: "everything" }],
    ["an unknown field", { scope: "all", force: true }],
    ["no scope", {}],
  ])("refuses %s", (_, r) => {
    expect(input.safeParse({ reason: "r", ...r }).success).toBe(false);
    expect(revocationRecordSchema.safeParse({ ...base, ...r }).success).toBe(false);
  });

  it("reports a missing field at its own path", () => {
    const r = input.safeParse({ scope: "phase", contestId: "c", reason: "r" });
    expect(r.success ? [] : r.error.issues.map((i) => i.path)).toEqual([["phase"]]);
  });
});
