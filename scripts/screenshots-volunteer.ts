/**
 * Saves screenshots of the volunteer pages (landing, calling, calling refused, refusal, signed
 * out; phone and laptop sizes) under docs/screenshots/, from the browser test that drives them
 * through the real product: `pnpm exec tsx scripts/screenshots-volunteer.ts`. Needs Chromium.
 */
import { spawnSync } from "node:child_process";
import { resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const out = resolve(root, "docs/screenshots");
const run = spawnSync("pnpm", ["exec", "vitest", "run", "test/browser/volunteer.test.ts"], {
  cwd: root,
  stdio: "inherit",
  // CI=true: without Chromium the suite fails rather than skipping, so no screenshot goes stale quietly.
  env: { ...process.env, SCREENSHOTS_DIR: out, CI: "true" },
});
if (run.status === 0) console.log(`volunteer pages saved under ${out}`);
process.exit(run.status ?? 1);
