import { createRouteMatcher } from "./route-scopes.ts";

/**
 * Data minimisation: for each upstream route, the JSON fields a volunteer may receive. The
 * gateway rebuilds every JSON response of a listed route from its allow-list, so a field the
 * upstream adds later never leaks by default. `recordId` names the field holding the member id,
 * which counts against the link's record quota.
 */
export interface ResponseRule {
  method: string;
  pattern: string;
  /** dot paths; a path through an array applies to each element */
  allow: readonly string[];
  recordId?: string;
  /** the upstream hands out a new record on each call (the quota is checked before asking it) */
  assignsRecord?: boolean;
}

export const DEFAULT_RESPONSE_RULES: readonly ResponseRule[] = [
  {
    method: "GET",
    pattern: "/calls/next",
    allow: [
      "call.id",
      "call.assignedAt",
      "call.member.id",
      "call.member.name",
      "call.member.phone",
      "call.member.ward",
      "call.member.constituency",
    ],
    recordId: "call.member.id",
    assignsRecord: true,
  },
  {
    method: "GET",
    pattern: "/members/:id",
    allow: ["id", "name", "phone", "ward", "constituency"],
    recordId: "id",
  },
];

/** The rule for a route, or null when its responses pass unchanged. */
export type ResponseFilter = (method: string, path: string) => CompiledResponseRule | null;

export interface CompiledResponseRule {
  readonly assignsRecord: boolean;
  apply(body: unknown): { body: unknown; recordId: string | null };
}

type Tree = { [key: string]: Tree | true };

function compileAllow(paths: readonly string[]): Tree {
  const root: Tree = {};
  for (const p of paths) {
    const parts = p.split(".");
    let node = root;
    for (const [i, part] of parts.entries()) {
      const existing = node[part];
      if (existing === true) break; // a whole-field allowance already covers anything below it
      if (i === parts.length - 1) {
        node[part] = true;
        break;
      }
      if (existing === undefined) node[part] = {};
      node = node[part] as Tree;
    }
  }
  return root;
}

function pick(value: unknown, tree: Tree | true): unknown {
  if (tree === true) return value;
  if (Array.isArray(value)) return value.map((v) => pick(v, tree));
  if (value === null || typeof value !== "object") return undefined;
  const out: Record<string, unknown> = {};
  for (const [key, sub] of Object.entries(tree)) {
    if (!Object.hasOwn(value, key)) continue;
    const picked = pick((value as Record<string, unknown>)[key], sub);
    if (picked !== undefined) out[key] = picked;
  }
  return out;
}

function at(value: unknown, path: string): unknown {
  let v = value;
  for (const part of path.split(".")) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

export function createResponseFilter(
  rules: readonly ResponseRule[] = DEFAULT_RESPONSE_RULES,
): ResponseFilter {
  const match = createRouteMatcher(
    rules.map((r) => {
      const tree = compileAllow(r.allow);
      const compiled: CompiledResponseRule = {
        assignsRecord: r.assignsRecord === true,
        apply(body) {
          const id = r.recordId ? at(body, r.recordId) : undefined;
          return {
            body: pick(body, tree) ?? {},
            recordId: typeof id === "string" || typeof id === "number" ? String(id) : null,
          };
        },
      };
      return { method: r.method, pattern: r.pattern, value: compiled };
    }),
  );
  return (method, path) => match(method, path);
}
