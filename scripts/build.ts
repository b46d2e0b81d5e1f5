/**
 * `pnpm build`: each service as one ES module, `services/<name>/dist/main.mjs`, which is how the
 * image runs them (infra/image/entrypoint.sh) and how `pnpm bench` measures the gateway.
 *
 * Why a bundle and not the sources: loading the workspace's ~1,000 module files (drizzle-orm alone
 * is hundreds) makes V8 grow its heap to ~280 MB while it loads, and the heap stays that size; the
 * same gateway from one file starts at ~110 MB RSS and in about a third of the time (docs/growth.md).
 *
 * Kept outside the bundle: PGlite (it loads its WebAssembly and data files from beside its own
 * module). The migrations are read at run time from packages/db/drizzle, found relative to the
 * bundle (`PHASELOCK_MIGRATIONS_URL`), so a bundle stays inside the repository's layout.
 */
import { mkdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = resolve(fileURLToPath(new URL("..", import.meta.url)));

/**
 * Node flags every service runs with (infra/image/entrypoint.sh says the same; a test checks).
 * V8's defaults on a large machine let the young generation grow to ~200 MB under load: the
 * gateway's RSS after 32 connections went from ~110 MB to ~270 MB. A 16 MB semi-space caps it
 * (~190 MB after the same load; 281 MB at 1,000,000 links and 100,000 revocations, docs/growth.md).
 * `--heap-growing-percent=100` saved ~50 MB more but cost ~10 % CPU per request on the audit-on
 * gateway side by side (221 against 201 µs), `=50` +19 %; not kept (pnpm bench, 2026-12-01).
 */
export const NODE_FLAGS: readonly string[] = ["--max-semi-space-size=16"];

export const SERVICES = {
  gateway: "services/gateway/src/main.ts",
  "token-service": "services/token-service/src/main.ts",
  phonebank: "services/phonebank/src/main.ts",
  migrate: "packages/db/src/migrate-cli.ts",
} as const;
export type ServiceName = keyof typeof SERVICES;

/** Where `pnpm build` writes a service's bundle (migrate: packages/db/dist/migrate.mjs). */
export function bundlePath(name: ServiceName): string {
  return name === "migrate"
    ? join(root, "packages/db/dist/migrate.mjs")
    : join(root, `services/${name}/dist/main.mjs`);
}

/**
 * Bundles `entry` (absolute, or relative to the repository root) into the ES module `outfile`.
 * `outfile` must lie inside the repository: the migrations are found relative to it.
 */
export async function bundle(entry: string, outfile: string): Promise<void> {
  const out = resolve(root, outfile);
  if (relative(root, out).startsWith("..")) throw new Error(`bundle: ${out} is outside the repository`);
  mkdirSync(dirname(out), { recursive: true });
  const migrations = `${relative(dirname(out), join(root, "packages/db/drizzle")).split("\\").join("/")}/`;
  await build({
    entryPoints: [resolve(root, entry)],
    outfile: out,
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node24",
    // The token service's console is hono/jsx (services/token-service/tsconfig.json).
    jsx: "automatic",
    jsxImportSource: "hono/jsx",
    external: ["@electric-sql/pglite"],
    define: { PHASELOCK_MIGRATIONS_URL: JSON.stringify(migrations) },
    // CommonJS dependencies (ioredis, pino, …) call require() for node's own modules.
    banner: {
      js: "import { createRequire as __plCreateRequire } from 'node:module'; const require = __plCreateRequire(import.meta.url);",
    },
    sourcemap: "linked",
    legalComments: "linked",
    logLevel: "warning",
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const asked = process.argv.slice(2) as ServiceName[];
  for (const name of asked) if (!(name in SERVICES)) throw new Error(`build: unknown service ${name}`);
  const names = asked.length > 0 ? asked : (Object.keys(SERVICES) as ServiceName[]);
  const t0 = performance.now();
  await Promise.all(names.map((n) => bundle(SERVICES[n], bundlePath(n))));
  for (const n of names) console.log(`built ${relative(root, bundlePath(n))}`);
  console.log(`in ${Math.round(performance.now() - t0)} ms`);
}
