import {
  chmodSync,
  closeSync,
  linkSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";

/** The file in `DATA_DIR` that says which process owns the directory. */
export const LOCK_FILE = "phaselock.lock";

/** What the lock file holds: enough for a second process to name the holder. */
export interface LockHolder {
  pid: number;
  host: string;
  /** ISO time the holder took the lock. */
  startedAt: string;
  /** What the holder runs, e.g. `pnpm start`. */
  command: string;
  /** Where the holder listens (name → port); the CLIs use `tokenService` to work through it. */
  ports: Record<string, number>;
  /** The holder's PID namespace (`currentPidNamespace`), where it has one: its pid means nothing outside it. */
  pidNamespace?: string | undefined;
  /** Which process holds it (`processStartOf`), where known: a pid alone may be reused. */
  processStart?: string | undefined;
}

/** Thrown when another live process holds `DATA_DIR`. The message names it. */
export class DataDirLockedError extends Error {
  readonly code = "data_dir_locked";
  readonly dataDir: string;
  readonly holder: LockHolder | undefined;
  /** `pidNamespace`: the refused process's (default: this one's). */
  constructor(dataDir: string, holder: LockHolder | undefined, pidNamespace?: string) {
    super(`the embedded database in ${dataDir} is in use by ${describeHolder(holder, pidNamespace)}`);
    this.dataDir = dataDir;
    this.holder = holder;
    this.name = "DataDirLockedError";
  }
}

export function describeHolder(
  holder: LockHolder | undefined,
  pidNamespace: string | undefined = currentPidNamespace(),
): string {
  if (!holder) return "another process (its lock file is being written or unreadable)";
  const ports = Object.entries(holder.ports)
    .map(([name, port]) => `${name} ${port}`)
    .join(", ");
  const elsewhere =
    holder.pidNamespace !== undefined && holder.pidNamespace !== pidNamespace
      ? ` in another PID namespace (another container)`
      : "";
  return `pid ${holder.pid} on ${holder.host}${elsewhere} (${holder.command}), since ${holder.startedAt}${ports ? `, ports: ${ports}` : ""}`;
}

/**
 * What to tell a person whose service was refused `DATA_DIR` (after the error's own message): a
 * running Phaselock is stopped, a CLI (`pnpm db:backup`, …) waited for; a holder whose pid means
 * nothing here (another host, another PID namespace) is stopped where it runs, never `kill`ed by a
 * pid that would name some other process here.
 */
export function lockedAdvice(
  holder: LockHolder | undefined,
  here: { host?: string; pidNamespace?: string | undefined } = {},
): string {
  if (holder && !holder.command.startsWith("pnpm start")) {
    return `${holder.command} is using it: wait for it to finish, then start again.`;
  }
  if (!holder) return "Is Phaselock already running? Stop it first.";
  const host = here.host ?? hostname();
  const pidNamespace = "pidNamespace" in here ? here.pidNamespace : currentPidNamespace();
  if (!judgeableHere(holder, host, pidNamespace)) {
    return `Is Phaselock already running there? Stop it where it runs (its pid names another process here); once it is gone, remove its DATA_DIR/${LOCK_FILE}.`;
  }
  return `Is Phaselock already running? Stop it first (Ctrl-C in its terminal, or kill ${holder.pid}).`;
}

export interface DataDirLock {
  readonly path: string;
  readonly holder: LockHolder;
  /** Records where the holder listens, for the CLIs to find it. */
  setPorts(ports: Record<string, number>): void;
  /** Removes the lock if it is still ours. Safe to call twice. */
  release(): void;
}

export interface AcquireOptions {
  command: string;
  ports?: Record<string, number>;
  /** Injected for tests; default: the current process. */
  pid?: number;
  host?: string;
  now?: () => Date;
  /**
   * Whether the holder `pid` (started at `processStart`, when its lock says) is alive on this host
   * (default: `defaultIsAlive`).
   */
  isAlive?: (pid: number, processStart?: string) => boolean;
  /** Injected for tests; default: `currentPidNamespace()`. */
  pidNamespace?: string | undefined;
  /** Injected for tests; default: this process's uid. */
  uid?: number | undefined;
}

const PRIVATE_DIR = 0o700;
const PRIVATE_FILE = 0o600;

/**
 * Creates `dir` (0700) if missing and tightens what is already there: directories 0700, files
 * 0600. PGlite writes its files 0666 whatever the umask, so callers run this again once the
 * database is open; the 0700 directory is what keeps later files private in between. Refuses a
 * directory, or anything in it, that another user owns (made beforehand in a shared folder such
 * as /tmp): its owner keeps every right over it whatever its mode, and the dev secrets it planted
 * (a known admin token and KEK) would be used. `uid`: injected for tests; default: this process's.
 */
export function securePrivateDir(dir: string, uid: number | undefined = process.getuid?.()): void {
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR });
  const walk = (path: string, isDir: boolean) => {
    const owner = lstatSync(path).uid;
    if (uid !== undefined && owner !== uid) {
      throw new Error(
        `${path} belongs to another user (uid ${owner}, not ${uid}), who could read or replace the database and the dev secrets kept there: use a DATA_DIR of your own`,
      );
    }
    chmodSync(path, isDir ? PRIVATE_DIR : PRIVATE_FILE);
    if (!isDir) return;
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      // Symlinks are left alone: chmod would follow them out of the directory.
      if (entry.isSymbolicLink()) continue;
      walk(join(path, entry.name), entry.isDirectory());
    }
  };
  walk(dir, true);
}

/**
 * This process's PID namespace (Linux: the `/proc/self/ns/pid` link, e.g. `pid:[4026531836]`),
 * undefined where there is none. Containers on one host may share its name (host networking, or
 * two containers of one Kubernetes pod) and a volume, but not their pids.
 */
export function currentPidNamespace(): string | undefined {
  try {
    return readlinkSync("/proc/self/ns/pid");
  } catch {
    return undefined;
  }
}

/**
 * Whether `holder`'s pid can be judged from here: the same host and the same PID namespace. A
 * lock written before the namespace was recorded names none, and is judged by its host alone.
 */
const judgeableHere = (holder: LockHolder, host: string, pidNamespace: string | undefined): boolean =>
  holder.host === host && (holder.pidNamespace === undefined || holder.pidNamespace === pidNamespace);

/**
 * `<boot id>/<start time in clock ticks since boot>` of `pid` (Linux /proc), undefined where it
 * cannot be read: names one process, where a pid is reused, and no wall clock is involved.
 */
export function processStartOf(pid: number): string | undefined {
  try {
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 22, counted from field 3 just after the command's ")" (a command may hold spaces).
    const start = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
    return boot && start ? `${boot}/${start}` : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `kill(pid, 0)`, and, when the lock says when its holder started, whether the process now at
 * that pid is that one: a pid reused by another process since (or one from before a reboot) is
 * not the holder, and telling the user to stop it would name an unrelated process.
 */
export function defaultIsAlive(pid: number, processStart?: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    // EPERM: alive, owned by another user.
    if ((err as NodeJS.ErrnoException).code === "ESRCH") return false;
  }
  const now = processStart === undefined ? undefined : processStartOf(pid);
  return now === undefined || now === processStart;
}

/** The current holder, or undefined when unlocked (or the file is unreadable). */
export function readLockHolder(dataDir: string): LockHolder | undefined {
  return readHolderFile(join(dataDir, LOCK_FILE));
}

function readHolderFile(path: string): LockHolder | undefined {
  try {
    const parsed = JSON.parse(readFileSync(path, "utf8")) as Partial<LockHolder>;
    if (typeof parsed.pid !== "number" || typeof parsed.host !== "string") return undefined;
    return {
      pid: parsed.pid,
      host: parsed.host,
      startedAt: String(parsed.startedAt ?? "?"),
      command: String(parsed.command ?? "?"),
      ports: parsed.ports && typeof parsed.ports === "object" ? parsed.ports : {},
      pidNamespace: typeof parsed.pidNamespace === "string" ? parsed.pidNamespace : undefined,
      processStart: typeof parsed.processStart === "string" ? parsed.processStart : undefined,
    };
  } catch {
    return undefined;
  }
}

const errno = (err: unknown): string | undefined => (err as NodeJS.ErrnoException).code;

/**
 * The live holder of `dataDir`, or undefined when nobody (alive on this host) holds it. A lock
 * from another host, or another PID namespace, counts as live: its pid means nothing here.
 */
export function liveLockHolder(
  dataDir: string,
  isAlive: (pid: number, processStart?: string) => boolean = defaultIsAlive,
): LockHolder | undefined {
  const holder = readLockHolder(dataDir);
  if (!holder) return undefined;
  return !judgeableHere(holder, hostname(), currentPidNamespace()) || isAlive(holder.pid, holder.processStart)
    ? holder
    : undefined;
}

/**
 * Takes `DATA_DIR` for this process, before anything opens the database. The lock file is
 * created with O_EXCL, so of two processes starting at once exactly one wins. A lock left by a
 * dead process (same host and PID namespace, `kill(pid, 0)` → ESRCH) is taken over; see `takeOverStale` for the
 * race that guards against. Throws `DataDirLockedError` naming a live holder.
 */
export function acquireDataDirLock(dataDir: string, opts: AcquireOptions): DataDirLock {
  const host = opts.host ?? hostname();
  const isAlive = opts.isAlive ?? defaultIsAlive;
  const pidNamespace = opts.pidNamespace ?? currentPidNamespace();
  const path = join(dataDir, LOCK_FILE);
  let holder: LockHolder = {
    pid: opts.pid ?? process.pid,
    host,
    startedAt: (opts.now?.() ?? new Date()).toISOString(),
    command: opts.command,
    ports: opts.ports ?? {},
    pidNamespace,
    processStart: opts.pid === undefined ? processStartOf(process.pid) : undefined,
  };
  securePrivateDir(dataDir, opts.uid ?? process.getuid?.());

  const isStale = (h: LockHolder | undefined): h is LockHolder =>
    h !== undefined &&
    judgeableHere(h, host, pidNamespace) &&
    h.pid !== holder.pid &&
    !isAlive(h.pid, h.processStart);

  for (let attempt = 0; attempt < 5; attempt++) {
    if (createExclusive(path, holder))
      return makeLock(
        path,
        () => holder,
        (h) => (holder = h),
      );
    const current = readHolderFile(path);
    if (current === undefined) {
      // Either being written this instant by a winner, or garbage left by a crash mid-write.
      // Only an old, empty/garbled file is treated as stale; a fresh one is a live writer.
      if (!garbageIsOld(path)) throw new DataDirLockedError(dataDir, undefined);
      takeOverStale(path, (h) => h === undefined);
      continue;
    }
    if (!isStale(current)) throw new DataDirLockedError(dataDir, current, pidNamespace);
    takeOverStale(path, isStale);
  }
  throw new DataDirLockedError(dataDir, readHolderFile(path));
}

function createExclusive(path: string, holder: LockHolder): boolean {
  let fd: number;
  try {
    fd = openSync(path, "wx", PRIVATE_FILE);
  } catch (err) {
    if (errno(err) === "EEXIST") return false;
    throw err;
  }
  try {
    writeSync(fd, `${JSON.stringify(holder)}\n`);
  } finally {
    closeSync(fd);
  }
  return true;
}

function garbageIsOld(path: string): boolean {
  try {
    return Date.now() - lstatSync(path).mtimeMs > 10_000;
  } catch {
    return true;
  }
}

/**
 * Removes a stale lock without ever removing a live one. The race: A and B both read the same
 * stale lock; A deletes it and creates its own; B, acting on what it read earlier, would then
 * delete A's fresh lock and create another — two owners. So the stale file is never deleted by
 * name: it is renamed to a name unique to this process (atomic: of several renamers exactly one
 * gets that inode), and the file actually moved is judged again. If it is not stale after all
 * (a winner's fresh lock), it is put back with link(), which fails rather than overwrite
 * whatever lock exists by then. The caller then retries the O_EXCL create.
 */
function takeOverStale(path: string, stillStale: (h: LockHolder | undefined) => boolean): void {
  const aside = `${path}.stale-${process.pid}-${Date.now()}`;
  try {
    renameSync(path, aside);
  } catch (err) {
    if (errno(err) === "ENOENT") return; // someone else moved it; retry the create
    throw err;
  }
  const moved = readHolderFile(aside);
  if (!stillStale(moved)) {
    try {
      linkSync(aside, path);
    } catch (err) {
      if (errno(err) !== "EEXIST") throw err;
    }
  }
  unlinkSync(aside);
}

function makeLock(path: string, get: () => LockHolder, set: (h: LockHolder) => void): DataDirLock {
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    process.off("exit", release);
    // Only our own lock: never one a later process took over.
    const current = readHolderFile(path);
    const mine = get();
    if (current && current.pid === mine.pid && current.startedAt === mine.startedAt) {
      try {
        unlinkSync(path);
      } catch {
        // already gone
      }
    }
  };
  // Runs on process.exit() and a normal end; the services' SIGINT/SIGTERM handlers exit through it.
  process.on("exit", release);
  return {
    path,
    get holder() {
      return get();
    },
    setPorts(ports) {
      const next = { ...get(), ports };
      // Rewritten through a temp file and rename so a reader never sees half a lock.
      const tmp = `${path}.${process.pid}.tmp`;
      const fd = openSync(tmp, "w", PRIVATE_FILE);
      try {
        writeSync(fd, `${JSON.stringify(next)}\n`);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, path);
      set(next);
    },
    release,
  };
}
