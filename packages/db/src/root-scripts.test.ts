import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, runRootScript } from "@phaselock/testkit";
import { spawnLockHolder } from "@phaselock/testkit/lock-holder";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The commands as the README gives them, from the repository root: `pnpm db:backup` and
// `pnpm db:restore` answer 2 for a usage error (cli.ts), which a script run through
// `pnpm --filter` lost (pnpm answers 1 for any failure); DATA_DIR is read from where pnpm ran,
// which the nested pnpm of `--filter` reset to the repository (INIT_CWD).

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "pl-db-root-scripts-"));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("the database and start commands, from the repository root", () => {
  it("pnpm db:backup and pnpm db:restore: 2 for a usage error", async () => {
    expect((await runRootScript(dir, {}, "db:backup", "--bogus")).code).toBe(2);
    expect((await runRootScript(dir, {}, "db:restore")).code).toBe(2);
  }, 60_000);

  it("pnpm start:token-service refuses an unmigrated database with its own message, reading DATA_DIR from where pnpm ran", async () => {
    // Before the migration below: the embedded database there is new, so not migrated.
    const run = await runRootScript(
      dir,
      { DATA_DIR: "./fresh", TOKEN_SERVICE_PORT: String(await freePort()) },
      "start:token-service",
    );
    expect(run.code, run.out).toBe(1);
    expect(run.out).toContain(
      `database is not migrated: run \`pnpm db:migrate\` (embedded database in ${join(dir, "fresh")})`,
    );
  }, 60_000);

  it("pnpm start reads DATA_DIR from where pnpm ran: a holder there refuses it, as it refuses the CLIs", async () => {
    const held = join(dir, "held");
    const holder = await spawnLockHolder(held, { command: "pnpm db:backup" });
    // A port in use as well, so that a start that missed the holder ends too (refused after the lock).
    const taken = createServer().listen(0, "127.0.0.1");
    await once(taken, "listening");
    try {
      const run = await runRootScript(
        dir,
        {
          DATA_DIR: "./held",
          TOKEN_SERVICE_PORT: String((taken.address() as AddressInfo).port),
          GATEWAY_PORT: String(await freePort()),
          PHONEBANK_PORT: String(await freePort()),
        },
        "start",
      );
      expect(run.code, run.out).toBe(1);
      expect(run.out).toContain(`the embedded database in ${held} is in use by pid ${holder.pid}`);
    } finally {
      await holder.stop();
      await new Promise((ok) => taken.close(ok));
    }
  }, 60_000);

  it("pnpm db:migrate: 0, on the embedded database in a DATA_DIR relative to where pnpm ran", async () => {
    const run = await runRootScript(dir, { DATA_DIR: "./data" }, "db:migrate");
    expect(run.code, run.out).toBe(0);
    expect(run.out).toContain(`to embedded PGlite in ${join(dir, "data")}`);
    expect(existsSync(join(dir, "data", "PG_VERSION"))).toBe(true);
  }, 60_000);
});
