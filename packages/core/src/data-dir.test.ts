import { existsSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  acquireDataDirLock,
  DataDirLockedError,
  LOCK_FILE,
  type LockHolder,
  lockedAdvice,
  readLockHolder,
} from "./data-dir.ts";

describe("the DATA_DIR lock", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "phaselock-lock-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const writeHolder = (pid: number, host = hostname()) =>
    writeFileSync(
      join(dir, LOCK_FILE),
      JSON.stringify({ pid, host, startedAt: "2026-01-01T00:00:00.000Z", command: "pnpm start", ports: {} }),
    );

  it("takes over a dead holder's lock and leaves no stray file behind", () => {
    writeHolder(999_999);
    const lock = acquireDataDirLock(dir, { command: "next", isAlive: () => false });
    expect(readLockHolder(dir)).toMatchObject({ pid: process.pid, command: "next" });
    expect(readdirSync(dir)).toEqual([LOCK_FILE]);
    lock.release();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
  });

  it("never takes over a live holder's lock, nor one from another host", () => {
    writeHolder(999_999);
    expect(() => acquireDataDirLock(dir, { command: "next", isAlive: () => true })).toThrow(
      DataDirLockedError,
    );
    writeHolder(999_999, "another-host");
    expect(() => acquireDataDirLock(dir, { command: "next", isAlive: () => false })).toThrow(
      /pid 999999 on another-host \(pnpm start\)/,
    );
    expect(readLockHolder(dir)?.host).toBe("another-host");
  });

  it("puts back a live lock that a racing takeover moved aside", () => {
    writeHolder(999_999);
    // The stale holder is judged dead; by the time the file is moved a winner's fresh lock is
    // there (modelled by the liveness answer flipping): it must be restored, not deleted.
    let calls = 0;
    const isAlive = () => calls++ > 0;
    expect(() => acquireDataDirLock(dir, { command: "loser", isAlive })).toThrow(DataDirLockedError);
    expect(readLockHolder(dir)?.pid).toBe(999_999);
    expect(readdirSync(dir)).toEqual([LOCK_FILE]);
  });

  it("treats an unreadable lock as held while fresh (being written), as stale once old", () => {
    writeFileSync(join(dir, LOCK_FILE), "");
    expect(() => acquireDataDirLock(dir, { command: "next" })).toThrow(/being written or unreadable/);
    const old = new Date(Date.now() - 60_000);
    utimesSync(join(dir, LOCK_FILE), old, old);
    acquireDataDirLock(dir, { command: "next" }).release();
  });

  it("refuses a DATA_DIR another user made beforehand (in a shared folder), taking nothing in it", () => {
    writeFileSync(join(dir, "dev-secrets.json"), "{}", { mode: 0o644 });
    const mine = process.getuid?.() ?? 0;
    // As a user other than the directory's owner sees it.
    expect(() => acquireDataDirLock(dir, { command: "next", uid: mine + 1 })).toThrow(
      `${dir} belongs to another user (uid ${mine}, not ${mine + 1})`,
    );
    expect(readdirSync(dir)).toEqual(["dev-secrets.json"]);
    expect(statSync(join(dir, "dev-secrets.json")).mode & 0o777).toBe(0o644);
  });

  it("releases only its own lock, never one a later process took over", () => {
    const lock = acquireDataDirLock(dir, { command: "first" });
    writeHolder(999_998);
    lock.release();
    expect(readLockHolder(dir)?.pid).toBe(999_998);
  });
});

describe("what a refused start tells the person", () => {
  const holder = (over: Partial<LockHolder>): LockHolder => ({
    pid: 4242,
    host: "laptop",
    startedAt: "2026-12-03T10:00:00.000Z",
    command: "pnpm start",
    ports: {},
    pidNamespace: "pid:[1]",
    ...over,
  });
  const here = { host: "laptop", pidNamespace: "pid:[1]" };

  it("a running Phaselock here: stop it, by its pid", () => {
    expect(lockedAdvice(holder({}), here)).toBe(
      "Is Phaselock already running? Stop it first (Ctrl-C in its terminal, or kill 4242).",
    );
  });

  it("a CLI (a backup, a restore): wait for it, never stop it", () => {
    const advice = lockedAdvice(holder({ command: "pnpm db:backup" }), here);
    expect(advice).toBe("pnpm db:backup is using it: wait for it to finish, then start again.");
  });

  it("a holder in another container or on another host: no pid to kill here", () => {
    for (const h of [holder({ pidNamespace: "pid:[2]" }), holder({ host: "server" })]) {
      const advice = lockedAdvice(h, here);
      expect(advice).toContain("Stop it where it runs");
      expect(advice).toContain(`remove its DATA_DIR/${LOCK_FILE}`);
      expect(advice).not.toContain("kill");
    }
  });
});
