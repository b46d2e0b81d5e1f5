import { describe, expect, it } from "vitest";
import { csvCell, toCsv } from "./csv.ts";

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
