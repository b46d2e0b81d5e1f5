import { spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createTestDatabase, type TestDatabase } from "@phaselock/db/testing";
import { childOutput, describeIntegration, freePort } from "@phaselock/testkit";
import { afterAll, beforeAll, expect, it } from "vitest";

const MAIN = fileURLToPath(new URL("./main.ts", import.meta.url));
const TSX = import.meta.resolve("tsx");

describeIntegration("pnpm start:token-service on an unmigrated database", ["postgres"], () => {
  let empty: TestDatabase;
  let parent: string;
  beforeAll(async () => {
    empty = await createTestDatabase({ migrate: false });
    parent = mkdtempSync(join(tmpdir(), "phaselock-ts-main-"));
  }, 60_000);
  afterAll(async () => {
    await empty?.drop();
    rmSync(parent, { recursive: true, force: true });
  });

  it("refuses, saying so, and neither generates nor prints a development admin token first", async () => {
    const dataDir = join(parent, "data");
    const child = spawn(process.execPath, ["--import", TSX, MAIN], {
      env: {
        ...process.env,
        DATABASE_URL: empty.url,
        DATA_DIR: dataDir,
        ADMIN_TOKEN: "",
        KEY_ENCRYPTION_KEY: "",
        NODE_ENV: "development",
        TOKEN_SERVICE_PORT: String(await freePort()),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const output = childOutput(child);
    const [code] = (await once(child, "exit")) as [number | null];
    expect(code, output()).toBe(1);
    expect(output()).toContain(
      "token-service: database is not migrated: run `pnpm db:migrate` (DATABASE_URL)",
    );
    expect(output()).not.toContain("ADMIN_TOKEN");
    expect(output()).not.toContain("pla_");
    expect(existsSync(join(dataDir, "dev-secrets.json"))).toBe(false);
  }, 30_000);
});
