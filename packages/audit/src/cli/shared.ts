import { createReadStream, realpathSync } from "node:fs";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import type { Readable } from "node:stream";
import { fileURLToPath } from "node:url";

/** True when the module at `moduleUrl` is the script node/tsx was started with. */
export function isMain(moduleUrl: string): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(moduleUrl));
  } catch {
    return false;
  }
}

/** `pnpm --filter` runs scripts in the package directory; INIT_CWD is where the user ran pnpm. */
export const userPath = (path: string, env: NodeJS.ProcessEnv): string =>
  resolve(env.INIT_CWD || process.cwd(), path);

/** Lines of a file (or of stdin for `-`), without their line endings. */
export function readLines(path: string, stdin: Readable = process.stdin): AsyncIterable<string> {
  const input = path === "-" ? stdin : createReadStream(path, { encoding: "utf8" });
  return createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
}

/** Query parameters that carry a credential (libpq and postgres.js accept `?password=`). */
const SECRET_PARAM = /pass|secret|token|key/i;

/** The URL without its password (in the authority or the query), for printing. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    for (const name of [...u.searchParams.keys()]) {
      if (SECRET_PARAM.test(name)) u.searchParams.set(name, "***");
    }
    return u.toString();
  } catch {
    return "(unparseable DATABASE_URL)";
  }
}
