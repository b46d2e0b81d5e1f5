import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { describeIntegration } from "@phaselock/testkit";
import { sql } from "drizzle-orm";
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
      expect(c.err()).toContain("usage: pnpm db:migrate [--grant ROLE | --check [--wait SECONDS]]");
    }
  });

  it("refuses a DATABASE_URL that is not a postgres:// URL, as the services do, connecting to nothing: 2", async () => {
    // redis:// (the neighbouring variable's value pasted in) waited 30 s for a Postgres greeting.
    for (const url of ["redis://127.0.0.1:1", "mysql://127.0.0.1:1/x", "not a url"]) {
      const c = io();
      expect(await runMigrateCli({ DATABASE_URL: url, DATA_DIR: "/nonexistent" }, c.io, []), url).toBe(2);
      expect(c.err(), url).toBe(
        "db:migrate: invalid environment:\n  DATABASE_URL: must be a postgres:// URL\n",
      );
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

describe("pnpm db:migrate --grant: usage", () => {
  it("answers 2 with --check, for a role name it would have to quote, or on the embedded database (making nothing)", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pl-migrate-grant-"));
    try {
      for (const [env, argv, says] of [
        [{ DATABASE_URL: "postgres://nowhere.invalid/db" }, ["--grant", "app", "--check"], "not both"],
        [
          { DATABASE_URL: "postgres://nowhere.invalid/db" },
          ["--grant", "App; drop table links"],
          "lowercase",
        ],
        [{ DATA_DIR: join(dir, "none") }, ["--grant", "app"], "set DATABASE_URL"],
      ] as const) {
        const c = io();
        expect(await runMigrateCli({ ...env }, c.io, [...argv]), argv.join(" ")).toBe(2);
        expect(c.err()).toContain(says);
      }
      expect(existsSync(join(dir, "none"))).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describeIntegration("pnpm db:migrate --grant on Postgres", ["postgres"], () => {
  let db: TestDatabase;
  const role = `pl_grant_${randomBytes(6).toString("hex")}`;
  beforeAll(async () => {
    db = await createTestDatabase({ migrate: false, poolSize: 1 });
    await db.handle.db.execute(sql.raw(`create role ${role} login`));
  });
  afterAll(async () => {
    await db?.handle.db.execute(sql.raw(`drop owned by ${role}`)).catch(() => {});
    await db?.handle.db.execute(sql.raw(`drop role if exists ${role}`)).catch(() => {});
    await db?.drop();
  });

  /** Postgres' message for `statement` run as the role, else undefined. */
  const failsAs = (statement: string): Promise<string | undefined> =>
    db.handle.db
      .transaction(async (tx) => {
        await tx.execute(sql.raw(`set local role ${role}`));
        await tx.execute(sql.raw(statement));
      })
      .then(
        () => undefined,
        (e: Error & { cause?: Error }) => e.cause?.message ?? e.message,
      );

  it("migrates, then grants the services' role its privileges; run again after a migration adds a table, grants that one too", async () => {
    const env = { DATABASE_URL: db.url };
    const first = io();
    expect(await runMigrateCli(env, first.io, ["--grant", role])).toBe(0);
    expect(first.out()).toContain("applied");
    expect(first.out()).toContain(`granted ${role} the services' privileges on every table`);
    expect(await failsAs("select count(*) from links")).toBeUndefined();
    expect(await failsAs("update audit_events set type = 'x'")).toMatch(/permission denied/);
    // A later migration's table (made by the owner, as a migration does): not the role's yet.
    await db.handle.db.execute(sql.raw("create table public.pl_later_table (id int)"));
    expect(await failsAs("select * from pl_later_table")).toMatch(/permission denied/);
    // The services' start-up check (and a gateway's init container, --check as the role) says so
    // and how to grant it, rather than letting the first request that reads it fail.
    const asRole = new URL(db.url);
    asRole.username = role;
    const check = io();
    expect(await runMigrateCli({ DATABASE_URL: asRole.toString() }, check.io, ["--check"])).toBe(1);
    expect(check.err()).toContain(
      `the database role ${role} may not read pl_later_table: as the tables' owner, run \`pnpm db:migrate --grant ${role}\``,
    );
    const again = io();
    expect(await runMigrateCli(env, again.io, ["--grant", role])).toBe(0);
    const granted = io();
    expect(await runMigrateCli({ DATABASE_URL: asRole.toString() }, granted.io, ["--check"])).toBe(0);
    expect(again.out()).toContain("is up to date");
    expect(await failsAs("select * from pl_later_table")).toBeUndefined();
    expect(await failsAs("update audit_events set type = 'x'")).toMatch(/permission denied/);
  });

  it("several at once (a Deployment's replicas starting together) all succeed: they take turns", async () => {
    const runs = Array.from({ length: 4 }, () => io());
    const codes = await Promise.all(
      runs.map((c) => runMigrateCli({ DATABASE_URL: db.url }, c.io, ["--grant", role])),
    );
    expect(codes, runs.map((c) => c.err()).join("")).toEqual([0, 0, 0, 0]);
  });

  it("answers 1 for a role that does not exist, saying to make it first", async () => {
    const c = io();
    expect(await runMigrateCli({ DATABASE_URL: db.url }, c.io, ["--grant", "pl_grant_nobody"])).toBe(1);
    expect(c.err()).toContain('role "pl_grant_nobody" does not exist');
    expect(c.err()).toContain('make the role first: README, "Database roles"');
  });
});
