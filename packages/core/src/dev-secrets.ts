import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";

/**
 * Secrets a development start generates once and keeps beside the embedded database (mode 0600),
 * so restarts reuse them (a KEK that changed on every start would leave stored keys undecryptable)
 * and every service started on the same `DATA_DIR` agrees. Production sets them all explicitly.
 */
export interface DevSecrets {
  adminToken: string;
  keyEncryptionKey: string;
  phonebankSecret: string;
  auditIpKey: string;
}

export function loadDevSecrets(dataDir: string): { secrets: DevSecrets; created: boolean; path: string } {
  const path = join(dataDir, "dev-secrets.json");
  if (existsSync(path)) {
    return { secrets: JSON.parse(readFileSync(path, "utf8")) as DevSecrets, created: false, path };
  }
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const secrets: DevSecrets = {
    adminToken: `pla_${randomBytes(32).toString("base64url")}`,
    keyEncryptionKey: randomBytes(32).toString("hex"),
    phonebankSecret: randomBytes(32).toString("base64url"),
    auditIpKey: randomBytes(32).toString("base64url"),
  };
  writeFileSync(path, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  return { secrets, created: true, path };
}

/**
 * `DATA_DIR` as the user meant it: relative to where they ran pnpm (`INIT_CWD`), not to the
 * package directory `pnpm --filter` runs a script in.
 */
export const resolveDataDir = (dataDir: string, initCwd: string | undefined): string =>
  resolve(initCwd || process.cwd(), dataDir);
