import { describe, expect, it } from "vitest";
import { GENESIS, type StoredEvent } from "./chain.ts";
import { describeExportResult, exportLine, headerLine, trailerLine, verifyExport } from "./export-format.ts";
import { buildChain, rehash } from "./test-chain.ts";

const chain = buildChain(40);

function exportOf(
  events: StoredEvent[],
  fromSeq = events[0]?.seq ?? 1,
  prevHash = events[0]?.prevHash ?? GENESIS,
) {
  const head = events.at(-1)?.hash ?? prevHash;
  return [headerLine(fromSeq, prevHash), ...events.map(exportLine), trailerLine(events.length, head)];
}

/** `lines` with the line holding event `seq` replaced. */
const editEvent = (lines: string[], seq: number, edit: (line: string) => string): string[] =>
  lines.map((l) => (l.includes(`"seq":${seq},`) ? edit(l) : l));

describe("export format", () => {
  it("starts with the documented header", () => {
    expect(JSON.parse(headerLine(1, GENESIS))).toEqual({
      type: "phaselock.audit.export",
      version: 1,
      from_seq: 1,
      prev_hash: GENESIS,
    });
  });

  it("writes every column of an event, chain columns included", () => {
    const e = chain[3]!;
    expect(JSON.parse(exportLine(e))).toEqual({ ...e, at: e.at.toISOString() });
  });
});

describe("verifyExport", () => {
  it("accepts a complete export and reports count and head", async () => {
    const r = await verifyExport(exportOf(chain));
    expect(r).toEqual({ ok: true, events: 40, fromSeq: 1, prevHash: GENESIS, head: chain.at(-1)!.hash });
    expect(describeExportResult(r)).toBe(`ok: 40 events, head ${chain.at(-1)!.hash} (from seq 1)`);
  });

  it("accepts an async line source, CRLF endings and a trailing blank line", async () => {
    async function* lines(): AsyncGenerator<string> {
      for (const l of exportOf(chain)) yield `${l}\r`;
      yield "";
    }
    expect(await verifyExport(lines())).toMatchObject({ ok: true, events: 40 });
  });

  it("accepts an export that starts mid-chain", async () => {
    expect(await verifyExport(exportOf(chain.slice(25)))).toMatchObject({
      ok: true,
      events: 15,
      fromSeq: 26,
    });
  });

  it("accepts an empty export", async () => {
    expect(await verifyExport(exportOf([], 41, chain.at(-1)!.hash))).toMatchObject({ ok: true, events: 0 });
  });

  it("names the seq of an event whose value was changed", async () => {
    const lines = editEvent(exportOf(chain), 17, (l) => l.replace('"actor":"vol-1"', '"actor":"vol-9"'));
    const r = await verifyExport(lines);
    expect(r).toEqual({
      ok: false,
      events: 16,
      line: 18,
      brokenAt: { seq: 17, id: "evt_16", reason: "hash_mismatch" },
    });
    expect(describeExportResult(r)).toContain("broken at seq 17");
  });

  it("refuses every single-byte change anywhere in an event line", async () => {
    const lines = exportOf(chain);
    const target = lines[10]!; // seq 10
    for (let i = 0; i < target.length; i++) {
      const code = target.charCodeAt(i);
      for (const replacement of [code ^ 1, 0x20]) {
        if (replacement === code) continue;
        const changed = target.slice(0, i) + String.fromCharCode(replacement) + target.slice(i + 1);
        const r = await verifyExport(lines.map((l, j) => (j === 10 ? changed : l)));
        expect(r.ok, `byte ${i} of ${target}`).toBe(false);
        if (!r.ok) expect(r.line).toBe(11);
      }
    }
  });

  it("reports a deleted line at the next event", async () => {
    const lines = exportOf(chain).filter((l) => !l.includes('"seq":20,'));
    expect(await verifyExport(lines)).toMatchObject({ ok: false, brokenAt: { seq: 21, reason: "seq_gap" } });
  });

  it("reports swapped lines", async () => {
    const lines = exportOf(chain);
    [lines[5], lines[6]] = [lines[6]!, lines[5]!];
    expect(await verifyExport(lines)).toMatchObject({ ok: false, brokenAt: { seq: 6, reason: "seq_gap" } });
  });

  it("reports a rewritten event even when its own hash was recomputed", async () => {
    const forged = chain.map((e) => (e.seq === 30 ? rehash({ ...e, reason: "nothing to see" }) : e));
    expect(await verifyExport(exportOf(forged))).toMatchObject({
      ok: false,
      brokenAt: { seq: 31, reason: "prev_mismatch" },
    });
  });

  it("reports an export cut short (no trailer) as truncated", async () => {
    const lines = exportOf(chain).slice(0, 30);
    expect(await verifyExport(lines)).toMatchObject({
      ok: false,
      events: 29,
      brokenAt: { seq: 30, id: null, reason: "truncated" },
    });
  });

  it("reports a trailer that does not match the events", async () => {
    const lines = exportOf(chain);
    lines[lines.length - 1] = trailerLine(39, chain.at(-1)!.hash);
    expect(await verifyExport(lines)).toMatchObject({ ok: false, brokenAt: { reason: "trailer_mismatch" } });
  });

  it("reports anything after the trailer", async () => {
    const lines = [...exportOf(chain), exportLine(chain[0]!)];
    expect(await verifyExport(lines)).toMatchObject({ ok: false, brokenAt: { reason: "malformed" } });
  });

  it("reports a blank line in the middle", async () => {
    const lines = exportOf(chain);
    lines.splice(5, 0, "");
    expect(await verifyExport(lines)).toMatchObject({
      ok: false,
      line: 6,
      brokenAt: { reason: "malformed" },
    });
  });

  it.each([
    ["missing", []],
    ["not JSON", ["{"]],
    ["wrong type", [JSON.stringify({ type: "x", version: 1, from_seq: 1, prev_hash: GENESIS })]],
    [
      "wrong version",
      [JSON.stringify({ type: "phaselock.audit.export", version: 2, from_seq: 1, prev_hash: GENESIS })],
    ],
    ["bad prev_hash", [headerLine(1, "abc")]],
    ["bad from_seq", [headerLine(0, GENESIS)]],
    [
      "reordered keys",
      [JSON.stringify({ version: 1, type: "phaselock.audit.export", from_seq: 1, prev_hash: GENESIS })],
    ],
  ])("refuses a header that is %s", async (_name, header) => {
    const lines = [...header, ...exportOf(chain).slice(1)];
    expect(await verifyExport(lines)).toMatchObject({
      ok: false,
      brokenAt: { seq: null, reason: "bad_header" },
    });
  });

  it("refuses a header whose start does not match the first event", async () => {
    const lines = exportOf(chain);
    lines[0] = headerLine(1, "a".repeat(64));
    expect(await verifyExport(lines)).toMatchObject({
      ok: false,
      brokenAt: { seq: 1, reason: "prev_mismatch" },
    });
    lines[0] = headerLine(2, GENESIS);
    expect(await verifyExport(lines)).toMatchObject({ ok: false, brokenAt: { seq: 1, reason: "seq_gap" } });
  });
});
