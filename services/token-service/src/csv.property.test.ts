import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { csvCell, parseCsv, toCsv } from "./csv.ts";

// The rows of a parse, or the error it reported.
const rowsOf = (text: string) => {
  const parsed = parseCsv(text);
  return parsed.ok ? { ok: true, rows: parsed.records.map((r) => r.cells) } : parsed;
};

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

describe("CSV writer and parser (property)", () => {
  it("round-trips any table through the parser, formulas defused", () => {
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
          const parsed = rowsOf(toCsv(columns, rows));
          expect(parsed).toEqual({ ok: true, rows: [headers.map(shown), ...rows.map((r) => r.map(shown))] });
        },
      ),
      { numRuns: 500 },
    );
  });

  it("never writes a cell a spreadsheet would run as a formula", () => {
    fc.assert(
      fc.property(cellValue, (v) => {
        const parsed = rowsOf(`${csvCell(v)}\r\n`);
        expect(parsed.ok).toBe(true);
        if (parsed.ok) expect(parsed.rows[0]![0]).not.toMatch(/^[=+\-@\t\r]/);
      }),
      { numRuns: 1000 },
    );
  });

  const table = fc
    .integer({ min: 1, max: 5 })
    .chain((width) =>
      fc.array(fc.array(cellText, { minLength: width, maxLength: width }), { minLength: 1, maxLength: 8 }),
    );
  const write = (rows: string[][]) =>
    toCsv(
      rows[0]!.map((_, i) => ({ header: `c${i}`, value: (r: string[]) => r[i]! })),
      rows,
    );

  it("reads LF line ends, a missing final line end and a byte-order mark as the same table", () => {
    fc.assert(
      fc.property(table, (rows) => {
        const crlf = write(rows);
        const want = rowsOf(crlf);
        expect(want.ok).toBe(true);
        // Only the record separators change: line breaks inside quoted cells are data.
        const lines = [rows[0]!.map((_, i) => `c${i}`), ...rows].map((r) => r.map(csvCell).join(","));
        const lf = `${lines.join("\n")}\n`;
        expect(rowsOf(lf)).toEqual(want);
        expect(rowsOf(`\uFEFF${crlf}`)).toEqual(want);
        // Without a final line end, a last record of one empty cell cannot be told from nothing.
        if (lines.at(-1) !== "") {
          expect(rowsOf(crlf.slice(0, -2))).toEqual(want);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("numbers each record by the line it starts on, counting breaks inside quoted cells", () => {
    fc.assert(
      fc.property(table, (rows) => {
        const parsed = parseCsv(write(rows));
        if (!parsed.ok) throw new Error(parsed.message);
        let line = 1;
        parsed.records.forEach((r, i) => {
          expect(r.line).toBe(line);
          const written = i === 0 ? "" : rows[i - 1]!.map(csvCell).join(",");
          line += 1 + (written.match(/\r\n|\n|\r/g)?.length ?? 0);
        });
      }),
      { numRuns: 300 },
    );
  });

  it("never throws on arbitrary input, and reports errors on a line of the input", () => {
    const csvish = fc
      .array(fc.oneof(fc.constantFrom(",", '"', "\r", "\n", "\r\n", "a", "\uFEFF", '""'), fc.string()), {
        maxLength: 30,
      })
      .map((parts) => parts.join(""));
    fc.assert(
      fc.property(fc.oneof(csvish, fc.string(), fc.string({ unit: "binary" })), (text) => {
        const parsed = parseCsv(text);
        if (!parsed.ok) {
          const lines = text.split(/\r\n|\n|\r/).length;
          expect(parsed.line).toBeGreaterThanOrEqual(1);
          expect(parsed.line).toBeLessThanOrEqual(lines);
          expect(parsed.message).not.toBe("");
        }
      }),
      { numRuns: 2000 },
    );
  });
});
