import { PROBLEM_CODES, PROBLEMS, problemType } from "./errors.ts";

/**
 * Examples for the OpenAPI document, derived from its schemas: every request and response body
 * gets one, built from the schema's own `example`s where routes give them and otherwise from one
 * table of field examples (the demo data's names), so no route can be left without and no two
 * routes disagree on what a campaign id looks like. Placeholders only: never a real key or token.
 */

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Schema = Record<string, unknown>;

interface MediaObject {
  schema?: unknown;
  example?: unknown;
  [k: string]: unknown;
}
interface OperationObject {
  parameters?: { name: string; in: string; schema?: Schema; example?: unknown }[];
  requestBody?: { content?: Record<string, MediaObject> };
  responses?: Record<string, { content?: Record<string, MediaObject> }>;
  [k: string]: unknown;
}
export interface DocWithSchemas {
  paths?: object;
  components?: { schemas?: object };
}

const AT = "2020-06-01T12:00:00.000Z";

const CSV_ANSWER =
  "ref,name,id,url,notBefore,expiresAt,status\r\nada@example.org,Ada,lnk_3fj0d9Qk1lJ2m3n4o5p6qA,http://127.0.0.1:8080/l/Zq0rX2m9sV4bT6nY8wK1cA,2020-06-01T12:00:00.000Z,2020-06-08T12:00:00.000Z,issued\r\n";

/** A problem body for `status`, with the first code the table lists for it. */
function problemExample(status: number): Json {
  const code = PROBLEM_CODES.find((c) => PROBLEMS[c].status === status) ?? "internal";
  return {
    type: problemType(code),
    title: PROBLEMS[code].title,
    status: PROBLEMS[code].status,
    detail:
      code === "validation" ? "The request did not pass validation; see `errors`." : PROBLEMS[code].title,
    code,
    requestId: "req_7Hq2mZ",
    ...(code === "validation"
      ? {
          errors: [
            { in: "body", pointer: "#/volunteers/3/ref", detail: "volunteer 4 (ref): must be …", index: 3 },
          ],
        }
      : {}),
  };
}

/** Field examples by property name: the demo data (CONTRACT "Demo data") and obvious placeholders. */
const FIELD_EXAMPLES: Record<string, Json> = {
  id: "lnk_3fj0d9Qk1lJ2m3n4o5p6qA",
  campaignId: "starmer-2020",
  contestId: "leadership-2020",
  phase: "ballot",
  name: "Starmer 2020",
  ref: "ada@example.org",
  volunteerRef: "ada@example.org",
  volunteer: "ada@example.org",
  linkId: "lnk_3fj0d9Qk1lJ2m3n4o5p6qA",
  linkIds: ["lnk_3fj0d9Qk1lJ2m3n4o5p6qA"],
  replaces: ["lnk_0ld1ink0ld1ink0ld1inkA"],
  reason: "volunteer lost their phone",
  label: "Coordinator, Starmer 2020",
  actor: "admin",
  issuedBy: "admin",
  kid: "k_2020-06-01_a1b2c3",
  url: "http://127.0.0.1:8080/l/Zq0rX2m9sV4bT6nY8wK1cA",
  token: "<signed link: shown once>",
  key: "plk_<shown once; store it now>",
  cursor: "WyIyMDIwLTA2LTAxVDEyOjAwOjAwLjAwMFoiLCJsbmtfMyJd",
  nextCursor: null,
  requestId: "req_7Hq2mZ",
  head: "3q2+7w==",
  brokenAt: null,
  contact: "Jo Bloggs, 07700 900123",
};

const PHASES: Json = [
  {
    name: "nominations",
    startsAt: "2020-01-07T00:00:00.000Z",
    endsAt: "2020-02-14T17:00:00.000Z",
    memberData: false,
  },
  {
    name: "ballot",
    startsAt: "2020-02-24T09:00:00.000Z",
    endsAt: "2020-04-02T12:00:00.000Z",
    memberData: true,
  },
];
const BALLOT = (PHASES as Json[])[1]!;

/** Whole examples of the schemas whose fields alone would make an implausible one. */
const SCHEMA_NAME_EXAMPLES: Record<string, Json> = {
  Scope: "calls:read",
  PhaseInput: BALLOT,
  Phase: BALLOT,
  ContestInput: { name: "Labour leadership 2020", phases: PHASES },
  Contest: { id: "leadership-2020", name: "Labour leadership 2020", phases: PHASES, currentPhase: BALLOT },
  CampaignInput: { name: "Starmer 2020", contestId: "leadership-2020", limits: { requestsPerMinute: 60 } },
  Campaign: {
    id: "starmer-2020",
    name: "Starmer 2020",
    contestId: "leadership-2020",
    limits: { requestsPerMinute: 60 },
  },
  EntitlementInput: { scopes: ["calls:read", "calls:write"] },
  Volunteer: { ref: "ada@example.org", name: "Ada Lovelace" },
  LinkCounts: { active: 120, revoked: 3, expired: 40, suspended: 0, exhausted: 2 },
};

/** `id` by the schema it is the id of. */
const IDS: Record<string, string> = {
  Contest: "leadership-2020",
  ContestReplaced: "leadership-2020",
  PhaseEnded: "leadership-2020",
  Campaign: "starmer-2020",
  CampaignDetail: "starmer-2020",
  ApiKey: "key_3fj0d9Qk1lJ2m3n4o5p6qA",
  ApiKeyCreated: "key_3fj0d9Qk1lJ2m3n4o5p6qA",
  Revocation: "rev_9Kd8s7Jh6Gf5Ds4Aq3Ww2e",
  RevocationCreated: "rev_9Kd8s7Jh6Gf5Ds4Aq3Ww2e",
  AuditEvent: "evt_5Tg4Rf3Ed2Ws1Qa0Zx9Cv8",
};

const refName = (schema: unknown): string | undefined => {
  const ref = (schema as { $ref?: unknown } | null | undefined)?.$ref;
  return typeof ref === "string" ? ref.split("/").pop() : undefined;
};

/** An example value for `schema` (a property named `field`, if any), resolving `$ref`s. */
export function exampleFor(
  schema: unknown,
  components: Record<string, unknown>,
  field?: string,
  depth = 0,
  within?: string,
): Json {
  if (depth > 12 || !schema || typeof schema !== "object") return null;
  const s = schema as Schema;
  if ("example" in s) return s.example as Json;
  if (Array.isArray(s.examples) && s.examples.length > 0) return s.examples[0] as Json;
  const name = refName(s);
  if (name) {
    if (name in SCHEMA_NAME_EXAMPLES) return SCHEMA_NAME_EXAMPLES[name]!;
    return exampleFor(components[name], components, field, depth + 1, name);
  }
  if (field === "id" && within && IDS[within]) return IDS[within];
  if (field !== undefined && Object.hasOwn(FIELD_EXAMPLES, field)) {
    const known = FIELD_EXAMPLES[field]!;
    // Only when the schema could hold it: `name` of a volunteer is a string, `links` may be counts.
    const t = s.type;
    const kind = Array.isArray(known) ? "array" : known === null ? "null" : typeof known;
    const types = Array.isArray(t) ? t : t === undefined ? [] : [t];
    if (types.length === 0 || types.includes(kind) || (kind === "null" && s.anyOf)) return known;
  }
  if ("const" in s) return s.const as Json;
  if (Array.isArray(s.enum) && s.enum.length > 0) return s.enum[0] as Json;
  if ("default" in s) return s.default as Json;
  for (const key of ["anyOf", "oneOf"] as const) {
    const options = s[key];
    if (Array.isArray(options)) {
      const first = options.find((o) => (o as Schema)?.type !== "null") ?? options[0];
      return exampleFor(first, components, field, depth + 1);
    }
  }
  if (Array.isArray(s.allOf)) {
    const merged: Record<string, Json> = {};
    for (const part of s.allOf) {
      const v = exampleFor(part, components, field, depth + 1);
      if (v && typeof v === "object" && !Array.isArray(v)) Object.assign(merged, v);
    }
    return merged;
  }
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== "null") : s.type;
  switch (type) {
    case "object": {
      const out: Record<string, Json> = {};
      const props = (s.properties ?? {}) as Record<string, unknown>;
      for (const [k, v] of Object.entries(props)) out[k] = exampleFor(v, components, k, depth + 1, within);
      if (
        Object.keys(props).length === 0 &&
        s.additionalProperties &&
        typeof s.additionalProperties === "object"
      ) {
        out.ballot = exampleFor(s.additionalProperties, components, undefined, depth + 1);
      }
      return out;
    }
    case "array":
      return [exampleFor(s.items, components, field, depth + 1)];
    case "integer":
    case "number":
      return typeof s.minimum === "number" && s.minimum > 1 ? s.minimum : 1;
    case "boolean":
      return false;
    case "string":
      if (s.format === "date-time" || /At$|^since$|^notBefore$/.test(field ?? "")) return AT;
      return field ? `${field}-example` : "example";
    default:
      return null;
  }
}

/**
 * Sets an `example` on every request and response body (JSON, CSV or text) and on every path
 * parameter that lacks one, in place; returns `doc`.
 */
export function addExamples<T extends DocWithSchemas>(doc: T): T {
  const components = (doc.components?.schemas ?? {}) as Record<string, unknown>;
  for (const item of Object.values((doc.paths ?? {}) as Record<string, Record<string, unknown>>)) {
    for (const [method, raw] of Object.entries(item)) {
      if (!["get", "put", "post", "delete", "patch"].includes(method)) continue;
      const op = raw as OperationObject;
      for (const p of op.parameters ?? []) {
        if (p.example === undefined) p.example = exampleFor(p.schema, components, p.name);
      }
      for (const [status, r] of Object.entries(op.responses ?? {})) {
        const problem = r.content?.["application/problem+json"];
        if (problem && problem.example === undefined) problem.example = problemExample(Number(status));
      }
      const bodies = [
        ...Object.entries(op.requestBody?.content ?? {}),
        ...Object.values(op.responses ?? {}).flatMap((r) => Object.entries(r.content ?? {})),
      ];
      for (const [type, media] of bodies) {
        if (media.example !== undefined) continue;
        if (type === "text/csv") {
          const e = exampleFor(media.schema, components);
          media.example = typeof e === "string" && e !== "example" ? e : CSV_ANSWER;
          continue;
        }
        media.example = exampleFor(media.schema, components);
      }
    }
  }
  return doc;
}
