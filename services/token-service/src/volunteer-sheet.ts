import { parseCsv } from "./csv.ts";
import { DisplayText, VolunteerRef } from "./schemas.ts";

/** A volunteer read from a sheet, with its row (the header being row 1) and the columns passed through. */
export interface SheetVolunteer {
  row: number;
  ref: string;
  name?: string;
  /** Every other column, by header, for the CSV answer only: never stored. */
  extra: Record<string, string>;
}

export interface SheetError {
  row: number;
  detail: string;
}

export type SheetResult =
  | {
      ok: true;
      volunteers: SheetVolunteer[];
      /** The passed-through columns' headers, in the sheet's order. */
      extraColumns: string[];
    }
  | { ok: false; errors: SheetError[] };

const MAX_ERRORS = 100;

/** What an upload that is not UTF-8 is told (a spreadsheet's plain "CSV" is often Windows-1252). */
export const NOT_UTF8 = "The file is not UTF-8 text; save the sheet as CSV UTF-8.";

/**
 * A sheet's bytes as text, or undefined when they are not UTF-8: decoding them anyway would turn
 * every accented name into U+FFFD, stored and sent out like that.
 */
export function decodeSheet(bytes: ArrayBuffer): string | undefined {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
const Name = DisplayText(100);

/**
 * Why a header without `ref` may still hold one: a spreadsheet set to another list separator
 * (Excel in much of Europe saves "CSV" with semicolons) or a sheet copied as tab-separated text
 * gives one cell such as `ref;name`. Empty when the header does not look like that.
 */
function otherSeparator(columns: readonly string[]): string {
  if (columns.length !== 1) return "";
  for (const [sep, what] of [
    [";", "semicolons"],
    ["\t", "tabs"],
  ] as const)
    if (columns[0]!.split(sep).some((c) => c.trim() === "ref"))
      return `: its cells are separated by ${what}; save the sheet as CSV (comma-separated)`;
  return "";
}

/**
 * Reads a volunteers sheet: a header row with `ref` and optionally `name` (any other columns are
 * passed through; none may be named twice or like one of `reserved`), one volunteer per row,
 * blank rows skipped. Every ref is checked against {@link VolunteerRef} and every error
 * names its row, so a coordinator can fix the sheet in one pass.
 */
export function readVolunteerSheet(
  text: string,
  opts: { reserved?: readonly string[]; maxVolunteers?: number } = {},
): SheetResult {
  // Read no further than one row past the bound: a file of millions of tiny rows is refused
  // without being held in memory (blank rows are skipped, and not counted).
  const max = opts.maxVolunteers;
  const parsed = parseCsv(text, { skipBlank: true, ...(max !== undefined ? { maxRecords: max + 1 } : {}) });
  if (!parsed.ok) return { ok: false, errors: [{ row: parsed.line, detail: parsed.message }] };
  const [header, ...rows] = parsed.records;
  if (!header) return { ok: false, errors: [{ row: 1, detail: "the file is empty: it needs a header row" }] };
  const columns = header.cells.map((c) => c.trim().toLowerCase());
  const refAt = columns.indexOf("ref");
  const nameAt = columns.indexOf("name");
  if (refAt === -1)
    return {
      ok: false,
      errors: [
        { row: header.line, detail: `the header row has no \`ref\` column${otherSeparator(columns)}` },
      ],
    };
  // A column named twice, or like a column the answer adds, would be ambiguous in the answer.
  const reserved = new Set((opts.reserved ?? []).map((r) => r.toLowerCase()));
  // A set, not indexOf: a header of a few hundred thousand columns fits in the body limit, and a
  // quadratic check of it held the event loop (every request of the service) for minutes.
  const named = new Set<string>();
  for (const [i, col] of columns.entries()) {
    if (named.has(col))
      return { ok: false, errors: [{ row: header.line, detail: `the header row names \`${col}\` twice` }] };
    named.add(col);
    if (reserved.has(col))
      return {
        ok: false,
        errors: [
          { row: header.line, detail: `\`${col}\` is a column of the answer; rename it in the sheet` },
        ],
      };
    if (col === "")
      return {
        ok: false,
        errors: [{ row: header.line, detail: `column ${i + 1} of the header row is empty` }],
      };
  }
  const extraColumns = header.cells.filter((_, i) => i !== refAt && i !== nameAt);
  const errors: SheetError[] = [];
  const volunteers: SheetVolunteer[] = [];
  const seen = new Map<string, number>();
  for (const { line: row, cells } of rows) {
    if (errors.length >= MAX_ERRORS) break;
    if (cells.every((c) => c === "")) continue;
    if (cells.length !== columns.length) {
      errors.push({ row, detail: `has ${cells.length} cells; the header has ${columns.length}` });
      continue;
    }
    const ref = VolunteerRef.safeParse(cells[refAt]);
    if (!ref.success) {
      errors.push({ row, detail: `ref: ${ref.error.issues[0]?.message ?? "invalid"}` });
      continue;
    }
    const first = seen.get(ref.data);
    if (first !== undefined) {
      errors.push({ row, detail: `ref "${ref.data}" is already on row ${first}` });
      continue;
    }
    seen.set(ref.data, row);
    const rawName = nameAt === -1 ? "" : (cells[nameAt] ?? "");
    const name = rawName === "" ? undefined : Name.safeParse(rawName);
    if (name && !name.success) {
      errors.push({ row, detail: `name: ${name.error.issues[0]?.message ?? "invalid"}` });
      continue;
    }
    // Defined, not assigned: `extra.__proto__ = …` would set the prototype, not a column.
    const entries: [string, string][] = [];
    for (const [i, col] of header.cells.entries())
      if (i !== refAt && i !== nameAt) entries.push([col, cells[i]!]);
    const extra: Record<string, string> = Object.fromEntries(entries);
    volunteers.push({ row, ref: ref.data, ...(name ? { name: name.data } : {}), extra });
  }
  if (parsed.truncatedAt !== undefined && errors.length < MAX_ERRORS) {
    errors.push({
      row: parsed.truncatedAt,
      detail: `a sheet holds at most ${max} volunteers; this is volunteer ${(max ?? 0) + 1}`,
    });
  }
  if (errors.length > 0) return { ok: false, errors };
  return { ok: true, volunteers, extraColumns };
}
