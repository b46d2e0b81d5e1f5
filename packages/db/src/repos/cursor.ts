import { PhaselockError } from "@phaselock/core";

/** Keyset position of a list sorted newest first by (timestamp desc, id desc). */
export interface Position {
  at: Date;
  id: string;
}

/** Opaque to clients: base64url of `[isoTime, id]`. */
export const encodeCursor = (p: Position): string =>
  Buffer.from(JSON.stringify([p.at.toISOString(), p.id])).toString("base64url");

/** Throws `PhaselockError("validation")` on anything that is not a cursor we issued. */
export function decodeCursor(cursor: string): Position {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    if (Array.isArray(parsed) && parsed.length === 2) {
      const [at, id] = parsed;
      if (typeof at === "string" && typeof id === "string") {
        const date = new Date(at);
        if (!Number.isNaN(date.getTime())) return { at: date, id };
      }
    }
  } catch {
    // fall through to the validation error
  }
  throw new PhaselockError("validation", "invalid cursor");
}

/** Lists answer at most this many items per page, whatever the caller asks. */
export const MAX_PAGE_SIZE = 500;

export const clampLimit = (limit: number): number =>
  Number.isFinite(limit) ? Math.min(MAX_PAGE_SIZE, Math.max(1, Math.floor(limit))) : MAX_PAGE_SIZE;

/** Opaque cursor of a list sorted by id alone (contests, campaigns): base64url of `["id", id]`. */
export const encodeIdCursor = (id: string): string =>
  Buffer.from(JSON.stringify(["id", id])).toString("base64url");

/** The id after which the next page starts; throws `PhaselockError("validation")` on a foreign cursor. */
export function decodeIdCursor(cursor: string): string {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"));
    if (Array.isArray(parsed) && parsed.length === 2 && parsed[0] === "id" && typeof parsed[1] === "string")
      return parsed[1];
  } catch {
    // fall through to the validation error
  }
  throw new PhaselockError("validation", "invalid cursor");
}

/** One page out of `limit + 1` rows fetched: the extra row says whether another page follows. */
export function pageOf<T>(
  rows: readonly T[],
  limit: number,
  cursorOf: (last: T) => string,
): {
  items: T[];
  nextCursor: string | null;
} {
  const items = rows.slice(0, limit);
  const last = items.at(-1);
  return { items, nextCursor: rows.length > limit && last !== undefined ? cursorOf(last) : null };
}
