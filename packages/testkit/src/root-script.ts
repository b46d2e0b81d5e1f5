import { spawn } from "node:child_process";
import { once } from "node:events";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";

/** The repository's root, where its package.json's scripts are. */
const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const PNPM = process.env.npm_execpath?.match(/pnpm[^/]*$/) ? process.env.npm_execpath : "pnpm";

/**
 * Runs one of the repository's root scripts as a user would from `cwd` (`pnpm -C <repo> <args>`),
 * with only PATH, HOME and `env` in its environment: its exit code and everything it wrote.
 */
export async function runRootScript(
  cwd: string,
  env: Record<string, string>,
  ...args: string[]
): Promise<{ code: number | null; out: string }> {
  const child = spawn(PNPM, ["-C", REPO, ...args], {
    cwd,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? tmpdir(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const add = (d: unknown) => {
    out += String(d);
  };
  child.stdout.on("data", add);
  child.stderr.on("data", add);
  const [code] = (await once(child, "exit")) as [number | null];
  return { code, out };
}
