/**
 * `pnpm db:migrate`: applies the committed migrations to DATABASE_URL, else to the embedded
 * database in DATA_DIR (default `./.data` from where pnpm was invoked). Idempotent.
 */
import { resolve } from "node:path";
import { createDb } from "./client.ts";
import { migrate } from "./migrate.ts";

/** The URL without its password, for printing. */
const redact = (url: string): string => {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "(unparseable DATABASE_URL)";
  }
};

async function main(): Promise<void> {
  const databaseUrl = process.env.DATABASE_URL || undefined;
  // `pnpm --filter` runs scripts in the package directory; INIT_CWD is where the user ran pnpm.
  const base = process.env.INIT_CWD || process.cwd();
  const dataDir = databaseUrl ? undefined : resolve(base, process.env.DATA_DIR || "./.data");
  const target = databaseUrl ? `postgres ${redact(databaseUrl)}` : `embedded PGlite in ${dataDir}`;
  const handle = createDb({ databaseUrl, dataDir });
  try {
    const { applied, total } = await migrate(handle);
    console.log(
      applied === 0
        ? `db:migrate: ${target} is up to date (${total} migrations)`
        : `db:migrate: applied ${applied} migration(s) to ${target} (${total} in total)`,
    );
  } finally {
    await handle.close();
  }
}

main().catch((err: unknown) => {
  console.error(`db:migrate failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
