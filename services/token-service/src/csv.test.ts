import { describe, expect, it } from "vitest";
import { csvCell, parseCsv, toCsv } from "./csv.ts";

describe("csvCell", () => {
  it.each([
    ["plain", "plain"],
    ["a,b", '"a,b"'],
    ['say "hi"', '"say ""hi"""'],
    ["two\nlines", '"two\nlines"'],
    ["=SUM(A1:A9)", "'=SUM(A1:A9)"],
    ["+44 20", "'+44 20"],
    ["-1", "'-1"],
    ["@handle", "'@handle"],
    ["\tTAB", "'\tTAB"],
    ['=cmd|"/c calc"!A1', `"'=cmd|""/c calc""!A1"`],
    ["", ""],
  ])("%j -> %j", (input, want) => expect(csvCell(input)).toBe(want));

  it("writes null as an empty cell", () => expect(csvCell(null)).toBe(""));
});

describe("toCsv", () => {
  it("writes a header row and CRLF lines", () => {
    const csv = toCsv(
      [
        { header: "ref", value: (r: { ref: string }) => r.ref },
        { header: "n", value: () => 1 },
      ],
      [{ ref: "a" }, { ref: "b,c" }],
    );
    expect(csv).toBe('ref,n\r\na,1\r\n"b,c",1\r\n');
  });
});

describe("parseCsv", () => {
  it.each<[string, string, string[][]]>([
    [
      "CRLF records",
      "ref,name\r\na,Ada\r\n",
      [
        ["ref", "name"],
        ["a", "Ada"],
      ],
    ],
    [
      "LF records, no final line end",
      "ref,name\na,Ada",
      [
        ["ref", "name"],
        ["a", "Ada"],
      ],
    ],
    ["a byte-order mark", "\uFEFFref\r\na\r\n", [["ref"], ["a"]]],
    ["quoted fields with escapes and breaks", 'a,"b,""c""\r\nd"\r\n', [["a", 'b,"c"\r\nd']]],
    ["empty cells and a trailing separator", ",x,\r\n", [["", "x", ""]]],
    ["a blank line is one empty cell", "a\r\n\r\nb\r\n", [["a"], [""], ["b"]]],
    ["nothing", "", []],
  ])("%s", (_, text, rows) => {
    const parsed = parseCsv(text);
    expect(parsed.ok && parsed.records.map((r) => r.cells)).toEqual(rows);
  });

  it("numbers records by the line they start on", () => {
    const parsed = parseCsv('ref,note\r\na,"two\r\nlines"\r\nb,x\n');
    expect(parsed.ok && parsed.records.map((r) => r.line)).toEqual([1, 2, 4]);
  });

  it.each<[string, string, number]>([
    ["a quote inside an unquoted field", 'ref\r\nab"c\r\n', 2],
    ["text after a closing quote", 'ref\r\nok\r\n"a"b\r\n', 3],
    ["an unclosed quote, reported where it opened", 'ref\r\n"open\r\nmore\r\n', 2],
    ["a bare carriage return", "ref\rx\r\n", 1],
  ])("refuses %s with its line", (_, text, line) => {
    const parsed = parseCsv(text);
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.line).toBe(line);
  });
});
