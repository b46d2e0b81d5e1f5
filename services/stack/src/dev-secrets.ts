import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Secrets the embedded demo generates once and keeps beside its database (mode 0600). */
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
  mkdirSync(dataDir, { recursive: true });
  const secrets: DevSecrets = {
    adminToken: `pla_${randomBytes(32).toString("base64url")}`,
    keyEncryptionKey: randomBytes(32).toString("hex"),
    phonebankSecret: randomBytes(32).toString("base64url"),
    auditIpKey: randomBytes(32).toString("base64url"),
  };
  writeFileSync(path, `${JSON.stringify(secrets, null, 2)}\n`, { mode: 0o600 });
  return { secrets, created: true, path };
}
