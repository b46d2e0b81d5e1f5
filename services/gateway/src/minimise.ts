/**
 * Data minimisation: the JSON fields of an upstream answer a volunteer may receive. The gateway
 * rebuilds every JSON answer of an allow-listed route from its list, so a field the upstream adds
 * later never leaks by default. Which route gets which list is the upstream route table's
 * (upstream-routes.ts). `recordId` names the field holding the member id, which counts against
 * the link's record quota.
 */
export interface AllowList {
  /** dot paths; a path through an array applies to each element */
  allow: readonly string[];
  recordId?: string;
  /** the upstream hands out a new record on each call (the quota is checked before asking it) */
  assignsRecord?: boolean;
}

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

/** Compiles an allow-list once, at startup, into the filter applied to each answer. */
export function compileAllowList(list: AllowList): CompiledResponseRule {
  const tree = compileAllow(list.allow);
  return {
    assignsRecord: list.assignsRecord === true,
    apply(body) {
      const id = list.recordId ? at(body, list.recordId) : undefined;
      return {
        body: pick(body, tree) ?? {},
        recordId: typeof id === "string" || typeof id === "number" ? String(id) : null,
      };
    },
  };
}
