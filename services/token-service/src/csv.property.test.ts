import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { csvCell, toCsv } from "./csv.ts";

// The token service writes CSV but has no reader of its own yet, so the round trip is checked
// against this strict RFC 4180 reader: CRLF records, `"` quoting with `""` escapes, and an error
// value (never an exception) for anything else.
type Parsed = { ok: true; rows: string[][] } | { ok: false; at: number };

function parseCsv(text: string): Parsed {
  const rows: string[][] = [];
  let row: string[] = [];
  let i = 0;
  while (i < text.length) {
    let cell = "";
    if (text[i] === '"') {
      i++;
      for (;;) {
        if (i >= text.length) return { ok: false, at: i };
        if (text[i] === '"') {
          if (text[i + 1] === '"') {
            cell += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        cell += text[i++];
      }
    } else {
      while (i < text.length && text[i] !== "," && text[i] !== "\r" && text[i] !== "\n") {
        if (text[i] === '"') return { ok: false, at: i };
        cell += text[i++];
      }
    }
    row.push(cell);
    if (text[i] === ",") {
      i++;
    } else if (text.startsWith("\r\n", i)) {
      rows.push(row);
      row = [];
      i += 2;
    } else {
      return { ok: false, at: i };
    }
  }
  if (row.length > 0) return { ok: false, at: i };
  return { ok: true, rows };
}

// What a spreadsheet should show for a written value: itself, with a leading `'` when it would
// otherwise run as a formula.
const shown = (v: string | number | null): string => {
  const s = v === null ? "" : String(v);
  return /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
};

const tricky = fc.constantFrom(
  ",",
  '"',
  '""',
  "\r",
  "\n",
  "\r\n",
  "=",
  "+",
  "-",
  "@",
  "\t",
  "'",
  "é",
  "\u2028",
  "🙂",
  " ",
);
const cellText = fc.oneof(
  fc.string(),
  fc.string({ unit: "grapheme" }),
  fc.array(fc.oneof(tricky, fc.string({ maxLength: 3 }))).map((p) => p.join("")),
  fc.tuple(fc.constantFrom("=", "+", "-", "@", "\t", "\r"), fc.string()).map(([a, b]) => a + b),
);
const cellValue = fc.oneof(cellText, cellText, fc.integer(), fc.double({ noNaN: true }), fc.constant(null));

describe("CSV writer (property)", () => {
  it("round-trips any table through an RFC 4180 reader, formulas defused", () => {
    fc.assert(
      fc.property(
        fc
          .integer({ min: 1, max: 5 })
          .chain((width) =>
            fc.tuple(
              fc.array(cellText, { minLength: width, maxLength: width }),
              fc.array(fc.array(cellValue, { minLength: width, maxLength: width }), { maxLength: 8 }),
            ),
          ),
        ([headers, rows]) => {
          const columns = headers.map((header, i) => ({
            header,
            value: (r: (string | number | null)[]) => r[i]!,
          }));
          const parsed = parseCsv(toCsv(columns, rows));
          expect(parsed).toEqual({ ok: true, rows: [headers.map(shown), ...rows.map((r) => r.map(shown))] });
        },
      ),
      { numRuns: 500 },
    );
  });

  it("never writes a cell a spreadsheet would run as a formula", () => {
    fc.assert(
      fc.property(cellValue, (v) => {
        const parsed = parseCsv(`${csvCell(v)}\r\n`);
        expect(parsed.ok).toBe(true);
        if (parsed.ok) expect(parsed.rows[0]![0]).not.toMatch(/^[=+\-@\t\r]/);
      }),
      { numRuns: 1000 },
    );
  });
});
