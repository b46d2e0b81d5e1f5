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
