import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { spawnLockHolder } from "@phaselock/testkit/lock-holder";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runExportCli } from "./export.ts";
import { redactUrl } from "./shared.ts";

function collect(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (chunk) => {
    text += String(chunk);
  });
  return { stream, text: () => text };
}

// Exporting through a running token service is shown end to end in services/stack/src/embedded.test.ts.
describe("audit:export while another process holds the embedded DATA_DIR", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "phaselock-audit-held-"));
  });
  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("refuses, naming the holder, when the holder runs no token service to export through", async () => {
    const holder = await spawnLockHolder(dir, { command: "pnpm start:gateway", ports: { gateway: 8080 } });
    try {
      const out = collect();
      const err = collect();
      expect(await runExportCli([], { DATA_DIR: dir }, { stdout: out.stream, stderr: err.stream })).toBe(1);
      expect(err.text()).toContain(`pid ${holder.pid}`);
      expect(err.text()).toContain("pnpm start:gateway");
      expect(err.text()).toContain("runs no token service");
      expect(out.text()).toBe("");
      // The PGlite files were never created, let alone opened.
      expect(existsSync(join(dir, "PG_VERSION"))).toBe(false);
    } finally {
      await holder.stop();
    }
  });
});

describe("redactUrl (what the CLIs print of DATABASE_URL)", () => {
  it("masks the password, in the authority and in the query (libpq's ?password=)", () => {
    expect(redactUrl("postgres://app:s3cret-pw@db:5432/phaselock")).not.toContain("s3cret-pw");
    const q = redactUrl(
      "postgres://app@db:5432/phaselock?sslmode=require&password=s3cret-pw&sslpassword=k3y-pw",
    );
    expect(q).not.toContain("s3cret-pw");
    expect(q).not.toContain("k3y-pw");
    expect(q).toContain("sslmode=require");
  });
});
