// Spreadsheet programs run a cell that starts with one of these as a formula (OWASP "CSV
// injection"); volunteer refs and names come from callers, so such cells get a leading quote.
const FORMULA_START = /^[=+\-@\t\r]/;

/** One CSV cell (RFC 4180 quoting), defused against formula injection. */
export function csvCell(value: string | number | null | undefined): string {
  if (value === null || value === undefined) return "";
  let s = String(value);
  if (FORMULA_START.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** A CSV document with a header row, CRLF line ends as RFC 4180 asks. */
export function toCsv<T>(
  columns: readonly { header: string; value: (row: T) => string | number | null }[],
  rows: readonly T[],
): string {
  const lines = [columns.map((c) => csvCell(c.header)).join(",")];
  for (const row of rows) lines.push(columns.map((c) => csvCell(c.value(row))).join(","));
  return `${lines.join("\r\n")}\r\n`;
}

/** One record of a parsed CSV file and the 1-based line it starts on (the header is line 1). */
export interface CsvRecord {
  line: number;
  cells: string[];
}

export type CsvParseResult =
  | {
      ok: true;
      records: CsvRecord[];
      /** With `maxRecords`: the line of the first record left unread, when there is one. */
      truncatedAt?: number;
    }
  | { ok: false; line: number; message: string };

export interface CsvParseOptions {
  /** Stop after this many records (counted after `skipBlank`): the rest is not read at all. */
  maxRecords?: number;
  /** Leave out records after the first whose cells are all empty (a spreadsheet's blank rows). */
  skipBlank?: boolean;
}

const BOM = "\uFEFF";

/**
 * Parses CSV as RFC 4180 writes it: `,` separators, `"` quoting with `""` escapes, fields quoted
 * to hold `,`, `"` or line breaks; records end with CRLF or LF (the last one optionally). A
 * leading byte-order mark is skipped. A blank line is a record of one empty cell, as the RFC
 * reads it; rows of differing width are returned as they are, for the caller to judge.
 * Malformed input (a quote inside an unquoted field, text after a closing quote, an unclosed
 * quote, a bare CR) is an error value naming the line, never an exception: the text comes from
 * whoever uploads it.
 */
export function parseCsv(input: string, opts: CsvParseOptions = {}): CsvParseResult {
  const text = input.startsWith(BOM) ? input.slice(BOM.length) : input;
  const records: CsvRecord[] = [];
  const max = opts.maxRecords ?? Number.POSITIVE_INFINITY;
  /** Keeps a record; answers the line to stop at when it is one past `maxRecords`. */
  const keep = (record: CsvRecord): number | undefined => {
    if (opts.skipBlank && records.length > 0 && record.cells.every((c) => c === "")) return undefined;
    if (records.length >= max) return record.line;
    records.push(record);
    return undefined;
  };
  const n = text.length;
  let i = 0;
  let line = 1;
  let recordLine = 1;
  let cells: string[] = [];
  const fail = (at: number, message: string): CsvParseResult => ({ ok: false, line: at, message });

  while (i < n) {
    let cell = "";
    if (text.charCodeAt(i) === 34 /* " */) {
      const openedAt = line;
      i++;
      let start = i;
      for (;;) {
        const q = text.indexOf('"', i);
        if (q === -1) return fail(openedAt, "a quoted field is never closed");
        // Count the line breaks the quoted field spans, so later lines keep their numbers.
        for (let j = i; j < q; j++) {
          const ch = text.charCodeAt(j);
          if (ch === 10 || (ch === 13 && text.charCodeAt(j + 1) !== 10)) line++;
        }
        if (text.charCodeAt(q + 1) === 34) {
          cell += text.slice(start, q + 1);
          i = q + 2;
          start = i;
          continue;
        }
        cell += text.slice(start, q);
        i = q + 1;
        break;
      }
    } else {
      const start = i;
      while (i < n) {
        const ch = text.charCodeAt(i);
        if (ch === 44 || ch === 10 || ch === 13) break;
        if (ch === 34) return fail(line, 'a quote (") inside an unquoted field; quote the whole field');
        i++;
      }
      cell = text.slice(start, i);
    }
    cells.push(cell);

    if (i >= n) break;
    const ch = text.charCodeAt(i);
    if (ch === 44 /* , */) {
      i++;
      // A separator at the very end still opens one last, empty, cell.
      if (i >= n) cells.push("");
      continue;
    }
    if (ch === 10 || (ch === 13 && text.charCodeAt(i + 1) === 10)) {
      i += ch === 13 ? 2 : 1;
      const stop = keep({ line: recordLine, cells });
      if (stop !== undefined) return { ok: true, records, truncatedAt: stop };
      cells = [];
      line++;
      recordLine = line;
      continue;
    }
    if (ch === 13) return fail(line, "a carriage return without a line feed outside a quoted field");
    return fail(line, "text after a closing quote; a quoted field must end at , or a line end");
  }
  if (cells.length > 0) {
    const stop = keep({ line: recordLine, cells });
    if (stop !== undefined) return { ok: true, records, truncatedAt: stop };
  }
  return { ok: true, records };
}
