import { z } from "@hono/zod-openapi";
import { SCOPES } from "@phaselock/core";
import { PROBLEM_CODES, PROBLEMS, type ProblemEntry } from "./errors.ts";

/** Ids of contests, campaigns and phase names: safe in URLs, logs and claims. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ID_MESSAGE = "1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit";

export const Slug = z.string().regex(ID_PATTERN, ID_MESSAGE);

// Visible characters only: names and reasons end up in CSV files and audit events.
const NO_CONTROL = /^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]*$/u;
// A lone surrogate (half of a UTF-16 pair, as a JSON `\uD800` escape makes) is no character:
// Postgres cannot store it (a 500) and UTF-8 writes it as U+FFFD, so it is refused, not rewritten.
const WELL_FORMED = /^\P{Cs}*$/u;
const WELL_FORMED_MESSAGE = "must be valid Unicode (it holds half of a character, a lone surrogate)";

/**
 * The characters of a volunteer ref: Unicode letters (with their combining marks) and decimal
 * digits, plus `. _ @ + - '`, starting with a letter or digit. That holds e-mail addresses,
 * member numbers and names in any script, and nothing that can split a header, a CSV cell or a
 * log line (no spaces, quotes, commas, separators or controls). Refs travel in claims and, percent-
 * encoded where not ASCII, in the gateway's upstream headers.
 */
export const VOLUNTEER_REF_PATTERN = /^[\p{L}\p{Nd}][\p{L}\p{M}\p{Nd}._@+\-']*$/u;
export const VOLUNTEER_REF_RULE =
  "1 to 128 characters: Unicode letters and digits and . _ @ + - ', starting with a letter or digit, in NFC";

/** A volunteer's reference in the campaign's own records (e-mail, member number…). */
export const VolunteerRef = z
  .string()
  // Plain words: a coordinator reads these beside a row of their sheet.
  .min(1, "is empty (every volunteer needs a ref)")
  .max(128, "is longer than 128 characters")
  .regex(VOLUNTEER_REF_PATTERN, `must be ${VOLUNTEER_REF_RULE}`)
  // Refused rather than rewritten: two spellings of one ref would name two volunteers.
  .refine((s) => s.normalize("NFC") === s, "must be in Unicode NFC (composed) form")
  .openapi({ description: `A volunteer ref: ${VOLUNTEER_REF_RULE}.`, example: "ada@example.org" });

/**
 * A ref named to find or revoke links: the looser rule refs were issued under before
 * {@link VolunteerRef}, so a link issued then can still be found and revoked by its volunteer.
 */
export const VolunteerRefLookup = z
  .string()
  .min(1)
  .max(128)
  .regex(NO_CONTROL, "must not contain control characters")
  .regex(WELL_FORMED, WELL_FORMED_MESSAGE)
  .refine((s) => s.trim() === s, "must not start or end with whitespace");

export const DisplayText = (max: number) =>
  z
    .string()
    .trim()
    .min(1, "is empty")
    .max(max, `is longer than ${max} characters`)
    .regex(NO_CONTROL, "must not contain control characters")
    .regex(WELL_FORMED, WELL_FORMED_MESSAGE);

export const IsoDateTime = z.iso.datetime({ offset: true }).openapi({ example: "2020-03-01T12:00:00Z" });

/**
 * A `since` filter: an ISO instant, or a date alone (`2020-03-01`: its first instant, UTC), as
 * `pnpm audit:export --since` and the console's audit filter take it. `new Date()` reads both.
 */
export const Since = z
  .union([IsoDateTime, z.iso.date()])
  .openapi({ example: "2020-03-01", description: "an ISO instant, or a date (its start, UTC)" });

export const ScopeSchema = z.enum(SCOPES).openapi("Scope");

export const Cursor = z
  .string()
  .max(512)
  .regex(/^[A-Za-z0-9_-]+$/, "not a cursor this service handed out")
  .openapi({ description: "`nextCursor` from the previous page" });

export const Limit = z.coerce
  .number()
  .int()
  .min(1)
  .max(500)
  .default(50)
  .openapi({ type: "integer", minimum: 1, maximum: 500, default: 50 });

export const ProblemSchema = z
  .object({
    type: z.string().openapi({ example: "urn:phaselock:problem:validation" }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.string().openapi({ description: "stable machine-readable code; branch on this" }),
    requestId: z.string(),
    errors: z
      .array(
        z.object({
          in: z.enum(["body", "query", "path", "header"]),
          pointer: z.string().openapi({ example: "#/volunteers/3/ref" }),
          detail: z.string(),
          row: z.number().int().optional().openapi({
            description: "CSV uploads: the file's line (the header being row 1)",
          }),
          index: z.number().int().optional().openapi({
            description: "JSON batches: the 0-based position of the volunteer in `volunteers`",
          }),
        }),
      )
      .optional(),
  })
  .openapi("Problem", { description: "RFC 9457 problem details" });

/** The first code the table lists for `status`, with its summary. */
function problemDescription(status: number): string {
  const code = PROBLEM_CODES.find((c) => PROBLEMS[c].status === status);
  if (!code) return "problem";
  const entry: ProblemEntry = PROBLEMS[code];
  return entry.summary ? `\`${code}\`: ${entry.summary}` : `\`${code}\``;
}

/**
 * Problem responses for a route's OpenAPI entry, with optional custom descriptions. Every such
 * route reads the database (an API key is looked up on each request), so each also lists 503
 * `unavailable`: the contract's answer while the database is unreachable.
 */
export function problems(...entries: (number | [number, string])[]) {
  const out: Record<
    number,
    { description: string; content: { "application/problem+json": { schema: typeof ProblemSchema } } }
  > = {};
  for (const e of [...entries, 503]) {
    if (e === 503 && out[503]) continue;
    const [status, description] = Array.isArray(e) ? e : [e, problemDescription(e)];
    out[status] = { description, content: { "application/problem+json": { schema: ProblemSchema } } };
  }
  return out;
}

export const bearer = [{ bearer: [] }];

/** A JSON request body: required, so a missing or non-JSON body is refused rather than skipped. */
export const jsonBody = <T extends z.ZodType>(schema: T, description?: string) => ({
  required: true,
  ...(description ? { description } : {}),
  content: { "application/json": { schema } },
});

export const jsonContent = <T extends z.ZodType>(schema: T, description: string) => ({
  description,
  content: { "application/json": { schema } },
});
