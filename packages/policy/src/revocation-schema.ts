import { z } from "zod";

export const REVOCATION_SCOPES = ["link", "volunteer", "campaign", "phase", "contest", "all"] as const;
export type RevocationScope = (typeof REVOCATION_SCOPES)[number];

export const REVOCATION_FIELDS = ["linkId", "volunteerRef", "campaignId", "contestId", "phase"] as const;
export type RevocationField = (typeof REVOCATION_FIELDS)[number];

/**
 * The one rule of what each revocation scope matches on (`required`) and what else it may carry:
 * `optional` a caller may give; `recorded` only the service sets, for the record (a link
 * revocation notes the link's contest). Any other field is refused. The API, the database, the
 * change feed and the revocation index all read this table.
 */
export const REVOCATION_RULES = {
  link: { required: ["linkId"], optional: ["campaignId"], recorded: ["contestId"] },
  volunteer: { required: ["volunteerRef"], optional: ["campaignId"], recorded: [] },
  campaign: { required: ["campaignId"], optional: [], recorded: [] },
  phase: { required: ["contestId", "phase"], optional: [], recorded: [] },
  contest: { required: ["contestId"], optional: [], recorded: [] },
  all: { required: [], optional: [], recorded: [] },
} as const satisfies Record<
  RevocationScope,
  {
    required: readonly RevocationField[];
    optional: readonly RevocationField[];
    recorded: readonly RevocationField[];
  }
>;

type Rule<S extends RevocationScope> = (typeof REVOCATION_RULES)[S];
type Needed<S extends RevocationScope> = Rule<S>["required"][number];
type Kept<S extends RevocationScope> = Rule<S>["optional"][number] | Rule<S>["recorded"][number];

/** What a revocation covers: one member per scope, with the fields that scope matches on. */
export type RevocationTarget = {
  [S in RevocationScope]: { scope: S } & { [F in Needed<S>]: string } & { [F in Kept<S>]?: string | null } & {
    [F in Exclude<RevocationField, Needed<S> | Kept<S>>]?: null;
  };
}[RevocationScope];

export type Revocation = RevocationTarget & {
  id: string;
  reason: string;
  actor: string;
  effectiveAt: Date;
  createdAt?: Date;
};

/**
 * `input`: a caller's request: optional fields may be left out, never null, and a field the scope
 * does not use (recorded ones included) is refused. `stored`: a revocation as kept and announced,
 * where an unused field may be null.
 */
export type RevocationForm = "input" | "stored";

export interface RevocationSchemaOptions<X extends z.ZodRawShape> {
  /** How each field's value must look (the API is stricter than the store). */
  fields: Record<RevocationField, z.ZodType<string>>;
  /** The fields besides the target's (id, reason, dates …). */
  extra: X;
  form: RevocationForm;
}

/**
 * The one revocation schema: a union discriminated by `scope`, each member a strict object with
 * exactly the fields {@link REVOCATION_RULES} gives that scope.
 */
export function revocationSchema<X extends z.ZodRawShape>(
  opts: RevocationSchemaOptions<X>,
): z.ZodType<RevocationTarget & z.output<z.ZodObject<X>>> {
  const stored = opts.form === "stored";
  const members = REVOCATION_SCOPES.map((scope) => {
    const rule: { [K in keyof Rule<"link">]: readonly RevocationField[] } = REVOCATION_RULES[scope];
    const shape: Record<string, z.core.$ZodType> = { ...opts.extra, scope: z.literal(scope) };
    for (const f of REVOCATION_FIELDS) {
      const field = opts.fields[f];
      if (rule.required.includes(f)) shape[f] = field;
      else if (rule.optional.includes(f) || (stored && rule.recorded.includes(f))) {
        shape[f] = stored ? field.nullish() : field.optional();
      } else if (stored) shape[f] = z.null({ error: `not used by scope ${scope}` }).optional();
      // In the input form an unused field is left out of the shape: the strict object refuses it.
    }
    return z.strictObject(shape);
  });
  return z.discriminatedUnion("scope", members as [(typeof members)[number], ...typeof members]) as never;
}

const anyId = z.string().min(1);
const ANY_FIELDS: Record<RevocationField, z.ZodType<string>> = {
  linkId: anyId,
  volunteerRef: anyId,
  campaignId: anyId,
  contestId: anyId,
  phase: anyId,
};

/**
 * A stored revocation, its dates read by `date` (a `Date` from the database, an ISO string on the
 * change feed). No format or length caps beyond non-empty ids: a stored revocation refused here
 * would be one a gateway cannot enforce.
 */
export const storedRevocationSchema = <D extends z.ZodType<Date, unknown>>(date: D) =>
  revocationSchema({
    fields: ANY_FIELDS,
    extra: {
      id: anyId,
      reason: z.string(),
      actor: z.string(),
      effectiveAt: date,
      createdAt: date.optional(),
    },
    form: "stored",
  }) as z.ZodType<Revocation>;

/** A revocation held in memory (dates as `Date`): what the database stores and loads. */
export const revocationRecordSchema = storedRevocationSchema(z.date());

/** The first field `r`'s scope matches on that it lacks (a bug upstream), or undefined. */
export function missingRevocationField(
  r: { scope: RevocationScope } & Partial<Record<RevocationField, unknown>>,
) {
  const rule = REVOCATION_RULES[r.scope];
  if (!rule) return "scope";
  return rule.required.find((f) => typeof r[f] !== "string" || r[f].length === 0);
}
