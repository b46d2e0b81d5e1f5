import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import {
  eventLeafHash,
  parseVerifierKey,
  streamEvents,
  verifyCheckpoint,
  verifyConsistency,
  verifyInclusion,
} from "@phaselock/audit";
import { runExportCli } from "@phaselock/audit/cli/export";
import { runVerifyCli } from "@phaselock/audit/cli/verify";
import { asDatabaseOwner } from "@phaselock/audit/testing";
import { queryRows } from "@phaselock/db";
import { createTestDatabase, type TestDatabase } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, callJson, createHarness, createKey, type Harness, ISSUER, seedOpen } from "../test-support.ts";

const b64 = (s: string) => new Uint8Array(Buffer.from(s, "base64"));

function sink(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on("data", (c: Buffer) => chunks.push(c));
  return { stream, text: () => Buffer.concat(chunks).toString("utf8") };
}

let issued = 0;
async function issue(h: Harness, campaignId: string, n: number): Promise<number> {
  // Fresh refs each time: a batch skips volunteers who already hold an active link of the phase.
  const volunteers = Array.from({ length: n }, () => ({ ref: `vol-${++issued}` }));
  const res = await call(h, "POST", "/v1/links/batch", {
    body: { campaignId, phase: "open", scopes: ["calls:read"], volunteers },
  });
  return res.status;
}

describe("audit checkpoints, proofs and key over the API", () => {
  let h: Harness;
  let campaignId: string;
  beforeAll(async () => {
    h = await createHarness();
    ({ campaignId } = await seedOpen(h));
  }, 60_000);
  afterAll(() => h.close());

  it("records the first signing key, made at start, as a key event in the same transaction as its row", async () => {
    const jwks = (
      await callJson<{ keys: { kid: string }[] }>(h, "GET", "/.well-known/jwks.json", { token: null })
    ).body;
    const { items } = (
      await callJson<{
        items: { seq: number; type: string; actor: string; data: Record<string, unknown> }[];
      }>(h, "GET", "/v1/audit?limit=500")
    ).body;
    const first = items.at(-1)!;
    expect(first).toMatchObject({
      seq: 1,
      type: "key.rotated",
      actor: "token-service",
      data: { kid: jwks.keys[0]!.kid, previousKid: null },
    });
    // One key event: nothing else at start or in the seed changes keys.
    expect(items.filter((e) => e.type === "key.rotated")).toHaveLength(1);
  });

  it("serves the verifier key as text, named after TOKEN_SERVICE_URL's host", async () => {
    const res = await call(h, "GET", "/.well-known/audit-key", { token: null });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await res.text();
    expect(text).toMatch(/^127\.0\.0\.1:4000\/audit\+[0-9a-f]{8}\+[A-Za-z0-9+/]+=*$/);
    expect(parseVerifierKey(text).name).toBe(`${new URL(ISSUER).host}/audit`);
  });

  it("stores the audit key's private half only encrypted", async () => {
    const [row] = await queryRows<{ private_key_enc: string }>(
      h.handle.db,
      sql`select private_key_enc from audit_keys`,
    );
    expect(row?.private_key_enc).toMatch(/^v1\./);
    expect(row?.private_key_enc).not.toContain("PRIVATE+KEY");
  });

  it("signs a checkpoint of the whole log, verifiable with the served key, for admin and auditor only", async () => {
    const key = await (await call(h, "GET", "/.well-known/audit-key", { token: null })).text();
    const res = await call(h, "GET", "/v1/audit/checkpoint");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    const opened = verifyCheckpoint(await res.text(), key, parseVerifierKey(key).name);
    expect(opened.ok).toBe(true);
    const [count] = await queryRows<{ n: number }>(
      h.handle.db,
      sql`select count(*)::int as n from audit_events`,
    );
    if (opened.ok) expect(opened.checkpoint.size).toBe(count?.n);

    const auditor = await createKey(h, "auditor");
    expect((await call(h, "GET", "/v1/audit/checkpoint", { token: auditor.key })).status).toBe(200);
    const coordinator = await createKey(h, "coordinator", campaignId);
    expect((await call(h, "GET", "/v1/audit/checkpoint", { token: coordinator.key })).status).toBe(403);
    expect((await call(h, "GET", "/v1/audit/checkpoint", { token: null })).status).toBe(401);
    expect((await call(h, "GET", "/v1/audit/proof?from=1&to=2", { token: coordinator.key })).status).toBe(
      403,
    );
  });

  it("answers consistency and inclusion proofs that verify against signed checkpoints", async () => {
    const first = await call(h, "GET", "/v1/audit/checkpoint");
    const key = await (await call(h, "GET", "/.well-known/audit-key", { token: null })).text();
    const older = verifyCheckpoint(await first.text(), key);
    expect(await issue(h, campaignId, 3)).toBe(201);
    const newer = verifyCheckpoint(await (await call(h, "GET", "/v1/audit/checkpoint")).text(), key);
    if (!older.ok || !newer.ok) throw new Error("checkpoints do not verify");
    const [m, n] = [older.checkpoint.size, newer.checkpoint.size];
    expect(n).toBe(m + 4);

    const cons = await callJson<{ proof: string[] }>(h, "GET", `/v1/audit/proof?from=${m}&to=${n}`);
    expect(cons.status).toBe(200);
    expect(
      verifyConsistency(m, n, older.checkpoint.rootHash, newer.checkpoint.rootHash, cons.body.proof.map(b64)),
    ).toBe(true);

    const events = [];
    for await (const e of streamEvents(h.handle.db)) events.push(e);
    for (const index of [0, m, n - 1]) {
      const inc = await callJson<{ proof: string[] }>(h, "GET", `/v1/audit/proof?index=${index}&size=${n}`);
      expect(inc.status).toBe(200);
      expect(
        verifyInclusion(
          index,
          n,
          eventLeafHash(events[index]!),
          inc.body.proof.map(b64),
          newer.checkpoint.rootHash,
        ),
      ).toBe(true);
    }
  });

  it.each([
    ["no parameters", ""],
    ["an unknown parameter", "?from=1&to=2&x=1"],
    ["mixed kinds", "?from=1&to=2&index=0"],
    ["only from", "?from=1"],
    ["a negative size", "?index=0&size=-1"],
    ["a non-number", "?from=a&to=2"],
    ["a leading zero", "?from=01&to=2"],
    ["from beyond to", "?from=3&to=2"],
    ["a size beyond the tree", "?from=1&to=1000000"],
    ["an index at the size", "?index=2&size=2"],
    ["an inclusion size beyond the tree", "?index=0&size=1000000"],
  ])("refuses %s with 400 validation", async (_, query) => {
    const res = await callJson<{ code: string }>(h, "GET", `/v1/audit/proof${query}`);
    expect(res.status).toBe(400);
    expect(res.res.headers.get("content-type")).toMatch(/^application\/problem\+json/);
    expect(res.body.code).toBe("validation");
  });
});

describe("every admin and issuance event commits with its change", () => {
  let h: Harness;
  let failing = false;
  let campaignId: string;
  beforeAll(async () => {
    h = await createHarness({ failAfterAppend: () => failing });
    ({ campaignId } = await seedOpen(h));
  }, 60_000);
  afterAll(() => h.close());

  const counts = async () => {
    const [row] = await queryRows<{ links: number; events: number; revocations: number; keys: number }>(
      h.handle.db,
      sql`select (select count(*)::int from links) as links, (select count(*)::int from audit_events) as events,
        (select count(*)::int from revocations) as revocations, (select count(*)::int from api_keys) as keys`,
    );
    return row!;
  };

  it.each([
    ["a batch issuance", (cid: string) => issue(h, cid, 5)],
    [
      "a revocation",
      async (cid: string) =>
        (
          await call(h, "POST", "/v1/revocations", {
            body: { scope: "campaign", campaignId: cid, reason: "x" },
          })
        ).status,
    ],
    [
      "an API key",
      async (cid: string) =>
        (await call(h, "POST", "/v1/api-keys", { body: { role: "coordinator", campaignId: cid } })).status,
    ],
    [
      "an entitlement",
      async (cid: string) =>
        (await call(h, "PUT", `/v1/campaigns/${cid}/entitlements/open`, { body: { scopes: ["calls:read"] } }))
          .status,
    ],
  ])(
    "%s: a failure after its inserts, before the commit, leaves neither change nor event",
    async (_, act) => {
      const before = await counts();
      failing = true;
      try {
        expect(await act(campaignId)).toBe(500);
      } finally {
        failing = false;
      }
      expect(await counts()).toEqual(before);
    },
  );

  it("without the failure, the same batch stores every link with its event", async () => {
    const before = await counts();
    expect(await issue(h, campaignId, 5)).toBe(201);
    const after = await counts();
    expect(after.links - before.links).toBe(5);
    expect(after.events - before.events).toBe(6);
  });
});

const popcount = (n: number): number => n.toString(2).replaceAll("0", "").length;

describeIntegration("pnpm audit:export + an API checkpoint verify offline", ["postgres"], () => {
  let db: TestDatabase;
  let h: Harness;
  let dir: string;
  beforeAll(async () => {
    db = await createTestDatabase();
    h = await createHarness({ handle: db.handle });
    dir = await mkdtemp(join(tmpdir(), "audit-e2e-"));
  }, 60_000);
  afterAll(async () => {
    await h?.close();
    await db?.drop();
    await rm(dir, { recursive: true, force: true });
  });

  it("verifies end to end, and fails once an event before the checkpoint is changed", async () => {
    const { campaignId } = await seedOpen(h);
    expect(await issue(h, campaignId, 4)).toBe(201);
    const older = await (await call(h, "GET", "/v1/audit/checkpoint")).text();
    expect(await issue(h, campaignId, 2)).toBe(201);
    const newer = await (await call(h, "GET", "/v1/audit/checkpoint")).text();
    const key = await (await call(h, "GET", "/.well-known/audit-key", { token: null })).text();
    await writeFile(join(dir, "audit.vkey"), key);
    await writeFile(join(dir, "old.note"), older);
    await writeFile(join(dir, "new.note"), newer);

    const exportFile = join(dir, "audit.ndjson");
    const exported = sink();
    expect(
      await runExportCli(
        ["--out", exportFile],
        { DATABASE_URL: db.url },
        { stdout: exported.stream, stderr: exported.stream },
      ),
    ).toBe(0);

    const verify = async (file: string) => {
      const out = sink();
      const code = await runVerifyCli(
        [
          file,
          "--key",
          join(dir, "audit.vkey"),
          "--checkpoint",
          join(dir, "new.note"),
          "--checkpoint",
          join(dir, "old.note"),
        ],
        {},
        { stdout: out.stream, stderr: out.stream },
      );
      return { code, text: out.text() };
    };
    const ok = await verify(exportFile);
    expect(ok.code, ok.text).toBe(0);
    expect(ok.text).toMatch(/consistent/);

    // An attacker flips a decision and recomputes nothing else: the signed root no longer matches.
    const lines = (await readFile(exportFile, "utf8")).split("\n");
    const i = lines.findIndex((l) => l.includes('"type":"link.issued"'));
    lines[i] = lines[i]!.replace('"decision":"allow"', '"decision":"deny"');
    await writeFile(join(dir, "edited.ndjson"), lines.join("\n"));
    expect((await verify(join(dir, "edited.ndjson"))).code).toBe(1);
  });

  it("a --since export (the contract's command as written) verifies against a checkpoint it reaches", async () => {
    const { campaignId } = await seedOpen(h);
    expect(await issue(h, campaignId, 3)).toBe(201);
    const kept = await (await call(h, "GET", "/v1/audit/checkpoint")).text();
    h.clock.advance(60_000);
    const since = h.clock.now().toISOString();
    expect(await issue(h, campaignId, 2)).toBe(201);
    const later = await (await call(h, "GET", "/v1/audit/checkpoint")).text();
    await writeFile(
      join(dir, "audit.vkey"),
      await (await call(h, "GET", "/.well-known/audit-key", { token: null })).text(),
    );
    await writeFile(join(dir, "kept.note"), kept);
    await writeFile(join(dir, "later.note"), later);

    const file = join(dir, "since.ndjson");
    const exported = sink();
    const code = await runExportCli(
      ["--since", since, "--out", file],
      { DATABASE_URL: db.url },
      {
        stdout: exported.stream,
        stderr: exported.stream,
      },
    );
    expect(code, exported.text()).toBe(0);
    const header = JSON.parse((await readFile(file, "utf8")).split("\n")[0]!) as {
      from_seq: number;
      frontier?: string[];
    };
    // It starts after the kept checkpoint, and names the tree of the events before it.
    expect(header.from_seq).toBe(Number(kept.split("\n")[1]) + 1);
    expect(header.frontier?.length).toBeGreaterThan(0);

    const verify = async (path: string) => {
      const out = sink();
      const args = [
        path,
        "--key",
        join(dir, "audit.vkey"),
        "--checkpoint",
        join(dir, "later.note"),
        "--checkpoint",
        join(dir, "kept.note"),
      ];
      return {
        code: await runVerifyCli(args, {}, { stdout: out.stream, stderr: out.stream }),
        text: out.text(),
      };
    };
    const ok = await verify(file);
    expect(ok.code, ok.text).toBe(0);
    expect(ok.text).toMatch(/checkpoint .*kept\.note: size \d+ root .* matches/);

    // A checkpoint row the log's key never signed (the services' role may insert one), the newest
    // below a later export's start, with a made-up frontier: the exporter passes it over, through
    // the API (which knows the key) and through the CLI on the database (which trusts no row).
    h.clock.advance(60_000);
    expect(await issue(h, campaignId, 1)).toBe(201);
    h.clock.advance(60_000);
    const since2 = h.clock.now().toISOString();
    const before = (await callJson<{ events: number }>(h, "GET", "/v1/audit/verify")).body.events;
    expect(await issue(h, campaignId, 1)).toBe(201);
    await writeFile(join(dir, "latest.note"), await (await call(h, "GET", "/v1/audit/checkpoint")).text());
    const fake = Buffer.alloc(32, 7).toString("base64");
    await db.handle.db.execute(
      sql`insert into audit_checkpoints (tree_size, root_hash, note, frontier, created_at)
          values (${before}, ${fake}, ${`phaselock.test\n${before}\n${fake}\n\n— x AAAA\n`},
                  ${JSON.stringify(Array.from({ length: popcount(before) }, () => fake))}::jsonb, now())`,
    );
    const viaApi = await call(h, "GET", `/v1/audit/export?since=${encodeURIComponent(since2)}`);
    expect(viaApi.status).toBe(200);
    const apiFile = join(dir, "since-api.ndjson");
    await writeFile(apiFile, await viaApi.text());
    const cliFile = join(dir, "since-cli.ndjson");
    const cli = ["--since", since2, "--out", cliFile];
    expect(
      await runExportCli(cli, { DATABASE_URL: db.url }, { stdout: sink().stream, stderr: sink().stream }),
    ).toBe(0);
    for (const path of [apiFile, cliFile]) {
      expect(JSON.parse((await readFile(path, "utf8")).split("\n")[0]!)).toMatchObject({
        from_seq: before + 1,
      });
      const out = sink();
      const args = [path, "--key", join(dir, "audit.vkey"), "--checkpoint", join(dir, "latest.note")];
      const code = await runVerifyCli(args, {}, { stdout: out.stream, stderr: out.stream });
      expect([path, code, out.text()]).toEqual([path, 0, expect.stringContaining("latest.note")]);
    }

    // An exported event changed: the later checkpoint's root is not reached.
    const lines = (await readFile(file, "utf8")).split("\n");
    const i = lines.findIndex((l) => l.includes('"type":"link.issued"'));
    lines[i] = lines[i]!.replace('"decision":"allow"', '"decision":"deny"');
    await writeFile(join(dir, "since-edited.ndjson"), lines.join("\n"));
    expect((await verify(join(dir, "since-edited.ndjson"))).code).toBe(1);
  });

  it("writes each checkpoint to AUDIT_CHECKPOINT_DIR as well", async () => {
    const files = await readdir(h.checkpointDir);
    expect(files.length).toBeGreaterThanOrEqual(2);
    const latest = await (await call(h, "GET", "/v1/audit/checkpoint")).text();
    const size = latest.split("\n")[1];
    expect(await readFile(join(h.checkpointDir, `${size}.note`), "utf8")).toBe(latest);
  });
});

describe("the checkpoint route when it cannot sign: 503 unavailable, logged", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness();
  });
  afterAll(async () => {
    await h.close();
  });

  /** A 503 `unavailable` problem whose detail says why, and the log line an operator reads. */
  async function expectUnavailable(detail: string, logged: string) {
    const res = await call(h, "GET", "/v1/audit/checkpoint");
    expect(res.status).toBe(503);
    expect(res.headers.get("content-type")).toContain("application/problem+json");
    const body = (await res.json()) as { code: string; detail: string };
    expect(body.code).toBe("unavailable");
    expect(body.detail).toContain(detail);
    // The path is the operator's to read in the log, not the caller's.
    expect(JSON.stringify(body)).not.toContain(h.checkpointDir);
    expect(h.logs).toContainEqual({ level: "error", msg: logged });
  }

  it("while the checkpoint folder cannot be written (audit not writable), and signs once it is back", async () => {
    await seedOpen(h);
    await rm(h.checkpointDir, { recursive: true, force: true });
    await writeFile(h.checkpointDir, "");
    await expectUnavailable("checkpoint folder", "audit checkpoint folder not writable");
    await rm(h.checkpointDir);
    expect((await call(h, "GET", "/v1/audit/checkpoint")).status).toBe(200);
  });

  it("once the log no longer holds what it signed: not an internal error", async () => {
    const signed = await (await call(h, "GET", "/v1/audit/checkpoint")).text();
    const size = Number(signed.split("\n")[1]);
    // An owner removes the newest events the checkpoint covers.
    await asDatabaseOwner(h.handle.db, (tx) =>
      tx.execute(sql`delete from audit_events where seq > ${size - 2}`),
    );
    await expectUnavailable("no longer matches the checkpoints it signed", "audit checkpoint refused");
  });

  it("verify still reports the removed events once the owner deletes the checkpoint rows too: the folder holds the note", async () => {
    const signed = await readdir(h.checkpointDir);
    const size = Math.max(...signed.map((f) => Number.parseInt(f, 10)));
    await asDatabaseOwner(h.handle.db, (tx) => tx.execute(sql`delete from audit_checkpoints`));
    const res = await call(h, "GET", "/v1/audit/verify");
    expect(await res.json()).toEqual({
      ok: false,
      events: size - 2,
      brokenAt: { seq: size - 1, id: "", reason: "seq_gap" },
    });
  });
});
