import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadDevSecrets } from "./dev-secrets.ts";

describe("loadDevSecrets", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  const fresh = () => {
    const d = mkdtempSync(join(tmpdir(), "phaselock-devsecrets-"));
    dirs.push(d);
    return d;
  };

  it("generates once, then reads the same secrets back", () => {
    const dir = fresh();
    const first = loadDevSecrets(dir);
    expect(first.created).toBe(true);
    expect(loadDevSecrets(dir)).toMatchObject({ created: false, secrets: first.secrets });
  });

  it("refuses a damaged file, saying which and what to do, without quoting any of it", () => {
    // JSON.parse's own messages quote the text around the fault: a few characters of a secret on
    // stderr (and in any log collector reading it).
    const dir = fresh();
    const secret = "pla_Zq8XkW3vJ9pT7mQ2Rb5Yc1Hn";
    for (const text of [
      `{"adminToken": ${secret}}`,
      `x{"adminToken": "${secret}"}`,
      `{"adminToken": "${secret}`,
    ]) {
      writeFileSync(join(dir, "dev-secrets.json"), text);
      const err = (() => {
        try {
          loadDevSecrets(dir);
        } catch (e) {
          return e as Error;
        }
        return undefined;
      })();
      expect(err?.message).toContain(`${join(dir, "dev-secrets.json")} is not the development secrets file`);
      for (let i = 0; i + 5 <= secret.length; i++) expect(err?.message).not.toContain(secret.slice(i, i + 5));
      expect(String(err?.stack)).not.toContain("Zq8Xk");
    }
  });
});
