import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runRootScript } from "@phaselock/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The commands as the README gives them, from the repository root: `pnpm audit:verify-export` must
// exit with the CLI's own code (0 ok, 1 broken or not verified, 2 usage or unreadable input,
// docs/audit.md), which a script run through `pnpm --filter` lost (pnpm answers 1 for any failure).

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pl-root-scripts-"));
  await writeFile(join(dir, "not-an-export.ndjson"), "{}\n");
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("the audit commands keep their exit codes from the repository root", () => {
  it("pnpm audit:verify-export: 2 for a missing file, 1 for a broken export (read from where pnpm ran)", async () => {
    const missing = await runRootScript(dir, {}, "audit:verify-export", "no-such-file.ndjson");
    expect(missing.code).toBe(2);
    expect(missing.out).toContain(join(dir, "no-such-file.ndjson"));
    expect((await runRootScript(dir, {}, "audit:verify-export", "not-an-export.ndjson")).code).toBe(1);
  }, 60_000);

  it("pnpm audit:export and pnpm audit:archive: 2 for an unknown option", async () => {
    expect((await runRootScript(dir, {}, "audit:export", "--bogus")).code).toBe(2);
    expect((await runRootScript(dir, {}, "audit:archive", "--bogus")).code).toBe(2);
  }, 60_000);
});
