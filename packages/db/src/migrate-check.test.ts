import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { describeIntegration } from "@phaselock/testkit";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runMigrateCli } from "./cli.ts";
import { migrate } from "./migrate.ts";
import { createTestDatabase, type TestDatabase } from "./testing.ts";

const io = () => {
  let out = "";
  let err = "";
  const stream = (add: (s: string) => void) =>
    new Writable({
      write(chunk, _enc, done) {
        add(String(chunk));
        done();
      },
    });
  return {
    io: {
      stdout: stream((s) => {
        out += s;
      }),
      stderr: stream((s) => {
        err += s;
      }),
    },
    out: () => out,
    err: () => err,
  };
};

describe("pnpm db:migrate --check: usage", () => {
  it("answers 2 for an unknown option, or --wait without --check or of no whole seconds", async () => {
    for (const argv of [
      ["--bogus"],
      ["--wait", "5"],
      ["--check", "--wait", "soon"],
      ["--check", "--wait", "-1"],
    ]) {
      const c = io();
      expect(await runMigrateCli({ DATA_DIR: "/nonexistent" }, c.io, argv), argv.join(" ")).toBe(2);
      expect(c.err()).toContain("usage: pnpm db:migrate [--check [--wait SECONDS]]");
    }
  });

  it("on a DATA_DIR with no embedded database: 1, and creates none", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pl-migrate-check-"));
    try {
      const c = io();
      expect(await runMigrateCli({ DATA_DIR: join(dir, "none") }, c.io, ["--check"])).toBe(1);
      expect(c.err()).toContain(`db:migrate --check failed: no embedded database in ${join(dir, "none")}`);
      expect(existsSync(join(dir, "none", "PG_VERSION"))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describeIntegration("pnpm db:migrate --check on Postgres", ["postgres"], () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false, poolSize: 1 });
  });
  afterAll(async () => {
    await db?.drop();
  });

  it("1 while unmigrated, applying nothing; after --wait's retries it answers 0 once the migration is in, else 1 when the time is up", async () => {
    const env = { DATABASE_URL: db.url };
    const unmigrated = io();
    expect(await runMigrateCli(env, unmigrated.io, ["--check"])).toBe(1);
    expect(unmigrated.err()).toContain("db:migrate --check failed: database is not migrated");
    // Nothing applied by the check: still unmigrated, and given up after the wait (a clock of its own).
    let t = 0;
    const pauses: number[] = [];
    const timedOut = io();
    const outcome = await runMigrateCli(env, timedOut.io, ["--check", "--wait", "5"], {
      now: () => t,
      pause: async (ms) => {
        pauses.push(ms);
        t += ms;
      },
    });
    expect(outcome).toBe(1);
    expect(pauses).toEqual([2000, 2000, 2000]);
    expect(timedOut.err()).toContain("database is not migrated");
    expect(timedOut.err()).toContain("(still, after 5 s)");
    // The token service migrates while a gateway's init container waits.
    const waiting = io();
    const done = await runMigrateCli(env, waiting.io, ["--check", "--wait", "60"], {
      now: () => 0,
      pause: async () => {
        await migrate(db.handle);
      },
    });
    expect(done).toBe(0);
    expect(waiting.out()).toContain("db:migrate --check: postgres");
    expect(waiting.out()).toContain("is migrated");
  });
});
