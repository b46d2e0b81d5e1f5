/**
 * `pnpm lint` fails on an import cycle (madge, configured under "madge" in the root package.json).
 * This proves the configuration catches the cycles this repo writes: `.ts` import extensions and
 * type-only imports, which a default madge run would not even read.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";

const root = resolve(import.meta.dirname, "..");
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function cycleCheck(files: Record<string, string>) {
  const dir = mkdtempSync(join(tmpdir(), "phaselock-cycles-"));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  // From the repo root, so madge reads the root package.json's configuration as `pnpm lint` does.
  const run = spawnSync(join(root, "node_modules/.bin/madge"), ["--circular", dir], {
    cwd: root,
    encoding: "utf8",
  });
  return { status: run.status, out: `${run.stdout}${run.stderr}` };
}

describe("the import-cycle check of pnpm lint", () => {
  it("fails on a cycle of type-only imports with .ts extensions", () => {
    const r = cycleCheck({
      "deps.ts": 'import type { Route } from "./router.ts";\nexport interface Deps { route?: Route }\n',
      "router.ts": 'import type { Deps } from "./deps.ts";\nexport interface Route { deps?: Deps }\n',
    });
    expect(r.status).toBe(1);
    expect(r.out).toMatch(/deps\.ts > router\.ts|router\.ts > deps\.ts/);
  });

  it("passes a layout whose shared module imports nothing back", () => {
    const r = cycleCheck({
      "deps.ts": "export interface Deps { name: string }\n",
      "router.ts": 'import type { Deps } from "./deps.ts";\nexport const route = (d: Deps) => d.name;\n',
    });
    expect(r.status).toBe(0);
  });
});
