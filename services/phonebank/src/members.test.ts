import { describe, expect, it } from "vitest";
import { createMemberDirectory, DEFAULT_MEMBER_COUNT, generateMember, memberId } from "./members.ts";

describe("synthetic members", () => {
  it("has at least 50,000 members by default", () => {
    const dir = createMemberDirectory();
    expect(DEFAULT_MEMBER_COUNT).toBeGreaterThanOrEqual(50_000);
    expect(dir.count).toBe(DEFAULT_MEMBER_COUNT);
    expect(dir.at(0).id).toBe("m_000001");
    expect(dir.at(dir.count - 1).id).toBe(memberId(dir.count));
  });

  it("gives the same member for the same id in every run (pinned values)", () => {
    // These values are fixed: if this fails, the generator or its word lists changed, and every
    // demo link and test that names a member has changed with it.
    expect(generateMember(1)).toEqual({
      id: "m_000001",
      name: "Mark Jones",
      phone: "07700 900920",
      ward: "Brookside West",
      constituency: "Hollins Green",
      email: "mark.jones.1@example.org",
      dateOfBirth: "1950-07-02",
      address: "35 Lime Lane, Hollins, XX49 4SB",
      membershipNumber: "L8012508",
      notes: "",
    });
    expect(generateMember(50_000)).toEqual({
      id: "m_050000",
      name: "Paul Clarke",
      phone: "07700 900954",
      ward: "Tenter Central",
      constituency: "Calder Moor",
      email: "paul.clarke.50000@example.org",
      dateOfBirth: "1991-01-19",
      address: "158 Church Drive, Caldermoor, XX73 3JH",
      membershipNumber: "L2441801",
      notes: "Welsh speaker.",
    });
  });

  it("is the same across directories, and differs with the seed", () => {
    const a = createMemberDirectory();
    const b = createMemberDirectory();
    for (const id of ["m_000001", "m_000123", "m_049999"]) expect(a.get(id)).toEqual(b.get(id));
    const other = createMemberDirectory({ seed: 1 });
    expect(other.get("m_000123")).not.toEqual(a.get("m_000123"));
    expect(other.get("m_000123")?.id).toBe("m_000123");
  });

  it("only uses reserved or invented contact details", () => {
    const dir = createMemberDirectory();
    for (let i = 0; i < dir.count; i += 97) {
      const m = dir.at(i);
      expect(m.id).toBe(memberId(i + 1));
      expect(m.phone).toMatch(/^07700 900\d{3}$/); // Ofcom's drama range
      expect(m.email).toMatch(/^[a-z.]+\.\d+@example\.org$/);
      expect(m.address).toMatch(/, XX\d{1,2} \d[A-Z]{2}$/);
      expect(m.dateOfBirth).toMatch(/^\d{4}-\d{2}-\d{2}$/);
      expect(new Date(`${m.dateOfBirth}T00:00:00Z`).toISOString().slice(0, 10)).toBe(m.dateOfBirth);
      expect(m.membershipNumber).toMatch(/^L\d{7}$/);
      expect(m.name).toMatch(/^\S+ \S+$/);
      expect(m.ward.length).toBeGreaterThan(0);
      expect(m.constituency.length).toBeGreaterThan(0);
    }
  });

  it.each(["", "m_", "m_1", "m_0000001", "m_000000", "M_000001", "m_000001 ", "m_050001", "x_000001"])(
    "has no member for %j",
    (id) => {
      expect(createMemberDirectory().get(id)).toBeUndefined();
    },
  );

  it("refuses sizes outside 1..999,999", () => {
    expect(() => createMemberDirectory({ count: 0 })).toThrow(RangeError);
    expect(() => createMemberDirectory({ count: 1_000_000 })).toThrow(RangeError);
    expect(() => createMemberDirectory({ count: 3 }).at(3)).toThrow(RangeError);
  });
});
