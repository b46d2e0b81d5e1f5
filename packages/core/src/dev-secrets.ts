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
  if (existsSync(path)) return { secrets: readDevSecrets(path), created: false, path };
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
 * The kept secrets. A file cut short or edited is refused by name, never with JSON.parse's own
 * message: that quotes the text around the fault, a few characters of a secret on stderr.
 */
function readDevSecrets(path: string): DevSecrets {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== undefined) throw err; // unreadable: fs says why
    parsed = undefined;
  }
  const fields: (keyof DevSecrets)[] = ["adminToken", "keyEncryptionKey", "phonebankSecret", "auditIpKey"];
  const ok =
    typeof parsed === "object" &&
    parsed !== null &&
    fields.every((f) => typeof (parsed as Record<string, unknown>)[f] === "string");
  if (!ok) {
    throw new Error(
      `${path} is not the development secrets file (not JSON with adminToken, keyEncryptionKey, phonebankSecret and auditIpKey): restore it, or remove it to generate new ones (keys stored under the old development KEY_ENCRYPTION_KEY then no longer decrypt)`,
    );
  }
  return parsed as DevSecrets;
}

/**
 * `DATA_DIR` as the user meant it: relative to where they ran pnpm (`INIT_CWD`), not to the
 * package directory `pnpm --filter` runs a script in.
 */
export const resolveDataDir = (dataDir: string, initCwd: string | undefined): string =>
  resolve(initCwd || process.cwd(), dataDir);
