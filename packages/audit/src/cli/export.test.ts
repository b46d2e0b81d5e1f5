import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { acquireDataDirLock, type DataDirLock } from "@phaselock/core";
import { spawnLockHolder } from "@phaselock/testkit/lock-holder";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GENESIS } from "../chain.ts";
import { headerLine, trailerLine } from "../export-format.ts";
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

describe("audit:export through the holder's token service, when it does not answer a whole export", () => {
  let dir: string;
  let lock: DataDirLock;
  let server: Server;
  let answer: (res: ServerResponse) => void = (res) => res.end();
  const requests: { url: string | undefined; authorization: string | undefined }[] = [];
  const env = () => ({ DATA_DIR: dir, ADMIN_TOKEN: "t".repeat(40) });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "phaselock-audit-service-"));
    server = createServer((req, res) => {
      requests.push({ url: req.url, authorization: req.headers.authorization });
      answer(res);
    }).listen(0, "127.0.0.1");
    await once(server, "listening");
    // The test process plays `pnpm start`, its token service the server above.
    lock = acquireDataDirLock(dir, { command: "pnpm start" });
    lock.setPorts({ tokenService: (server.address() as AddressInfo).port });
  });
  afterAll(async () => {
    lock?.release();
    if (server) await new Promise((ok) => server.close(ok));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("asks GET /v1/audit/export with --since and the admin token, and names a refusal's status and code", async () => {
    answer = (res) => {
      res.writeHead(403, { "content-type": "application/problem+json" });
      res.end(JSON.stringify({ status: 403, code: "forbidden", detail: "Auditors and admins only." }));
    };
    const out = collect();
    const err = collect();
    const code = await runExportCli(["--since", "2030-01-01"], env(), {
      stdout: out.stream,
      stderr: err.stream,
    });
    expect(code).toBe(1);
    expect(requests.at(-1)).toEqual({
      url: `/v1/audit/export?since=${encodeURIComponent("2030-01-01T00:00:00.000Z")}`,
      authorization: `Bearer ${"t".repeat(40)}`,
    });
    expect(err.text()).toContain(
      "audit:export failed: the token service answered 403 to GET /v1/audit/export (forbidden: Auditors and admins only.)",
    );
    expect(out.text()).toBe("");
  });

  it("refused 401 with the dev secrets file's token (the service runs with its own ADMIN_TOKEN), says to set ADMIN_TOKEN", async () => {
    answer = (res) => {
      res.writeHead(401, { "content-type": "application/problem+json" });
      res.end(
        JSON.stringify({ status: 401, code: "unauthorized", detail: "The bearer credential is not valid." }),
      );
    };
    await writeFile(join(dir, "dev-secrets.json"), JSON.stringify({ adminToken: "d".repeat(43) }));
    const err = collect();
    const code = await runExportCli([], { DATA_DIR: dir }, { stdout: collect().stream, stderr: err.stream });
    await rm(join(dir, "dev-secrets.json"));
    expect(code).toBe(1);
    expect(requests.at(-1)?.authorization).toBe(`Bearer ${"d".repeat(43)}`);
    expect(err.text()).toContain("set ADMIN_TOKEN to the one it was started with");
  });

  it("fails an export the service cut short (no trailer), saying the file is incomplete", async () => {
    answer = (res) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.end(`${headerLine(1, GENESIS)}\n{"seq":1}\n`);
    };
    const err = collect();
    const code = await runExportCli([], env(), { stdout: collect().stream, stderr: err.stream });
    expect(code).toBe(1);
    expect(err.text()).toMatch(/ended without its trailer after 2 lines .*the file is incomplete/);
  });

  it("--out: a failed export leaves the file there as it was and no partial one; a whole one replaces it", async () => {
    const target = join(dir, "exports", "audit.ndjson");
    await mkdir(join(dir, "exports"));
    await writeFile(target, "the previous export\n");
    const failures: Array<(res: ServerResponse) => void> = [
      (res) => {
        res.writeHead(403, { "content-type": "application/problem+json" });
        res.end(JSON.stringify({ status: 403, code: "forbidden" }));
      },
      (res) => {
        res.writeHead(200, { "content-type": "application/x-ndjson" });
        res.end(`${headerLine(1, GENESIS)}\n{"seq":1}\n`);
      },
    ];
    for (const failure of failures) {
      answer = failure;
      const err = collect();
      expect(
        await runExportCli(["--out", target], env(), { stdout: collect().stream, stderr: err.stream }),
      ).toBe(1);
      expect(err.text()).toContain(`(nothing written to ${target})`);
      expect(await readFile(target, "utf8")).toBe("the previous export\n");
      expect(await readdir(join(dir, "exports"))).toEqual(["audit.ndjson"]);
    }
    const whole = `${headerLine(1, GENESIS)}\n${trailerLine(0, GENESIS)}\n`;
    answer = (res) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.end(whole);
    };
    expect(
      await runExportCli(["--out", target], env(), { stdout: collect().stream, stderr: collect().stream }),
    ).toBe(0);
    expect(await readFile(target, "utf8")).toBe(whole);
    expect(await readdir(join(dir, "exports"))).toEqual(["audit.ndjson"]);
  });

  it("--out - writes to stdout, as without --out, and makes no file named '-'", async () => {
    const whole = `${headerLine(1, GENESIS)}\n${trailerLine(0, GENESIS)}\n`;
    answer = (res) => {
      res.writeHead(200, { "content-type": "application/x-ndjson" });
      res.end(whole);
    };
    const out = collect();
    expect(
      await runExportCli(
        ["--out", "-"],
        { ...env(), INIT_CWD: dir },
        { stdout: out.stream, stderr: collect().stream },
      ),
    ).toBe(0);
    expect(out.text()).toBe(whole);
    expect(existsSync(join(dir, "-"))).toBe(false);
  });
});

describe("audit:export with a DATA_DIR that holds no database", () => {
  it("refuses, saying so, and creates no database there", async () => {
    const parent = await mkdtemp(join(tmpdir(), "phaselock-audit-none-"));
    try {
      for (const dataDir of [join(parent, "typo"), parent]) {
        const err = collect();
        expect(
          await runExportCli([], { DATA_DIR: dataDir }, { stdout: collect().stream, stderr: err.stream }),
        ).toBe(1);
        expect(err.text()).toContain(`no embedded database in ${dataDir}: nothing to export`);
        expect(existsSync(join(dataDir, "PG_VERSION"))).toBe(false);
      }
    } finally {
      await rm(parent, { recursive: true, force: true });
    }
  });
});

describe("audit:export with a DATABASE_URL that is not a postgres:// URL", () => {
  it("refuses it as the services do (2), writing nothing and connecting to nothing", async () => {
    const dir = await mkdtemp(join(tmpdir(), "phaselock-audit-url-"));
    try {
      for (const url of ["redis://127.0.0.1:1", "mysql://127.0.0.1:1/x", "not a url"]) {
        const err = collect();
        const target = join(dir, "export.ndjson");
        expect(
          await runExportCli(
            ["--out", target],
            { DATABASE_URL: url },
            { stdout: collect().stream, stderr: err.stream },
          ),
          url,
        ).toBe(2);
        expect(err.text(), url).toBe(
          "audit:export: invalid environment:\n  DATABASE_URL: must be a postgres:// URL\n",
        );
        expect(await readdir(dir)).toEqual([]);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
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
