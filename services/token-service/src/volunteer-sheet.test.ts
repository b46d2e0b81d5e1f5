import { describe, expect, it } from "vitest";
import { readVolunteerSheet } from "./volunteer-sheet.ts";

describe("readVolunteerSheet", () => {
  it("reads refs in any script, names and passed-through columns, with their rows", () => {
    const sheet = '\uFEFFref,name,ward\r\nŁukasz-1,Łukasz,North\r\n\r\nada@example.org,,"South, East"\r\n';
    expect(readVolunteerSheet(sheet)).toEqual({
      ok: true,
      volunteers: [
        { row: 2, ref: "Łukasz-1", name: "Łukasz", extra: { ward: "North" } },
        { row: 4, ref: "ada@example.org", extra: { ward: "South, East" } },
      ],
      extraColumns: ["ward"],
    });
  });

  it("says why a header has no ref when the sheet is separated by semicolons or tabs, not commas", () => {
    const detail = (sheet: string) => {
      const result = readVolunteerSheet(sheet);
      return result.ok ? undefined : result.errors[0]?.detail;
    };
    expect(detail("ref;name\nada-1;Ada\n")).toBe(
      "the header row has no `ref` column: its cells are separated by semicolons; save the sheet as CSV (comma-separated)",
    );
    expect(detail("Name\tRef\nAda\tada-1\n")).toContain("separated by tabs");
    // No such hint where the header simply lacks the column.
    expect(detail("name,ward\nAda,North\n")).toBe("the header row has no `ref` column");
    expect(detail("volunteer;name\nada-1;Ada\n")).toBe("the header row has no `ref` column");
  });

  it("refuses refs outside the character set, or not in NFC, naming the row", () => {
    const sheet = [
      "ref,name",
      "ok-1,A",
      "has space,B",
      `${"L\u0301"}ukasz,C`, // a decomposed accent: NFC would compose it
      "v\u0007,D",
      '"x<y",E',
      "ok-1,F",
    ].join("\n");
    const result = readVolunteerSheet(sheet);
    expect(result.ok).toBe(false);
    if (result.ok) return;
    expect(result.errors.map((e) => e.row)).toEqual([3, 4, 5, 6, 7]);
    expect(result.errors[1]?.detail).toContain("NFC");
  });

  it("says in plain words that a ref is empty or too long, or a name too long", () => {
    const sheet = ["ref,name", ",No ref", `${"r".repeat(129)},Long ref`, `ok-1,${"n".repeat(101)}`].join(
      "\n",
    );
    const result = readVolunteerSheet(sheet);
    expect(result).toMatchObject({
      ok: false,
      errors: [
        { row: 2, detail: "ref: is empty (every volunteer needs a ref)" },
        { row: 3, detail: "ref: is longer than 128 characters" },
        { row: 4, detail: "name: is longer than 100 characters" },
      ],
    });
  });

  it("names the line of a malformed file, and a missing ref column", () => {
    expect(readVolunteerSheet('ref\r\nok\r\nba"d\r\n')).toMatchObject({ ok: false, errors: [{ row: 3 }] });
    expect(readVolunteerSheet("email\r\na@b\r\n")).toMatchObject({ ok: false, errors: [{ row: 1 }] });
    expect(readVolunteerSheet("")).toMatchObject({ ok: false, errors: [{ row: 1 }] });
  });

  it("refuses a header naming a column twice, an empty column name, or a reserved one", () => {
    expect(readVolunteerSheet("ref,email,Email\r\na,b,c\r\n")).toMatchObject({
      ok: false,
      errors: [{ row: 1 }],
    });
    expect(readVolunteerSheet("ref,,x\r\na,b,c\r\n")).toMatchObject({ ok: false, errors: [{ row: 1 }] });
    const reserved = readVolunteerSheet("ref,URL\r\na,b\r\n", { reserved: ["url", "status"] });
    expect(reserved).toMatchObject({
      ok: false,
      errors: [{ row: 1, detail: expect.stringContaining("url") }],
    });
  });

  // A header of this width fits well within the upload's 4 MiB; checked column by column against
  // every earlier one it took about 40 s (400,000 columns: minutes), holding the event loop.
  it("reads a header of 200,000 columns in linear time", () => {
    const width = 200_000;
    const header = ["ref", ...Array.from({ length: width }, (_, i) => `c${i}`)].join(",");
    const started = performance.now();
    const result = readVolunteerSheet(`${header}\nv-1${",x".repeat(width)}\n`);
    expect(performance.now() - started).toBeLessThan(3000);
    expect(result).toMatchObject({ ok: true, volunteers: [{ row: 2, ref: "v-1" }] });
    // The duplicate is still found, however far along.
    expect(readVolunteerSheet(`${header},C7\nv-1${",x".repeat(width + 1)}\n`)).toMatchObject({
      ok: false,
      errors: [{ row: 1, detail: "the header row names `c7` twice" }],
    });
  });

  it("stops reading past maxVolunteers: a sheet of millions of rows is refused without parsing it all", () => {
    // Row 13 is malformed: a sheet read to its end would report that instead.
    const rows = Array.from({ length: 11 }, (_, i) => `v-${i},,`);
    const sheet = ["ref,name,ward", ...rows, ",,", 'bad"quote,x,y', ...Array(1000).fill("w,x,y")].join("\n");
    expect(readVolunteerSheet(sheet, { maxVolunteers: 10 })).toEqual({
      ok: false,
      errors: [{ row: 12, detail: "a sheet holds at most 10 volunteers; this is volunteer 11" }],
    });
    // Rows of empty cells (a spreadsheet's formatted blank rows) are skipped and not counted.
    const padded = ["ref", ...Array(50).fill(""), "v-1", ...Array(50).fill(",")].join("\n");
    expect(readVolunteerSheet(padded, { maxVolunteers: 1 })).toMatchObject({
      ok: true,
      volunteers: [{ row: 52 }],
    });
  });
});
