import { randomBytes } from "node:crypto";
import { FakeClock } from "@phaselock/core";
import { createRepos, schema } from "@phaselock/db";
import { dbBackends, type TestDb } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { TOKEN_AUDIENCE } from "@phaselock/tokens";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyManager } from "./keys.ts";
import {
  call,
  callJson,
  createHarness,
  createKey,
  decodePart,
  type Harness,
  ISSUER,
  seedOpen,
  verifierFor,
} from "./test-support.ts";

const kek = () => new Uint8Array(randomBytes(32));
const claims = (kid: string, exp: number) => ({
  iss: ISSUER,
  aud: TOKEN_AUDIENCE,
  sub: "v",
  jti: `lnk_${kid.slice(0, 8)}`,
  iat: exp - 100,
  nbf: exp - 100,
  exp,
  cmp: "c",
  cst: "k",
  phs: "p",
  scp: ["calls:read" as const],
});

for (const backend of dbBackends) {
  describeIntegration(`KeyManager (${backend.name})`, backend.needs, () => {
    let db: TestDb;
    beforeAll(async () => {
      db = await backend.open();
    }, 60_000);
    afterAll(() => db?.drop());

    it("creates one active key, stored encrypted, and loads it again with the same KEK", async () => {
      const repos = createRepos(db.handle.db);
      const clock = new FakeClock();
      const secret = kek();
      const first = new KeyManager({ signingKeys: repos.signingKeys, kek: secret, clock });
      expect(() => first.signer()).toThrow();
      const created = await first.ensureActiveKey();
      expect(created.created).toMatchObject({ kid: created.kid, publicJwk: { kty: "OKP", crv: "Ed25519" } });

      const rows = await db.handle.db.select().from(schema.signingKeys);
      const row = rows.find((r) => r.kid === created.kid)!;
      expect(row.privateKeyEnc).toMatch(/^v1\./);
      expect(row.privateKeyEnc).not.toContain("PRIVATE KEY");
      expect(row.publicJwk).not.toHaveProperty("d");

      const again = new KeyManager({ signingKeys: repos.signingKeys, kek: secret, clock });
      expect(await again.ensureActiveKey()).toEqual({ kid: created.kid, created: null });
      expect(again.signer().kid).toBe(created.kid);

      const wrongKek = new KeyManager({ signingKeys: repos.signingKeys, kek: kek(), clock });
      await expect(wrongKek.ensureActiveKey()).rejects.toMatchObject({ code: "key_decryption_failed" });
    });

    it("keeps a retired key published until the last token it signed expires", async () => {
      const repos = createRepos(db.handle.db);
      const clock = new FakeClock("2021-01-01T00:00:00Z");
      const keys = new KeyManager({ signingKeys: repos.signingKeys, kek: kek(), clock });
      await keys.rotate();
      const old = keys.signer();
      const exp = Math.floor(clock.now().getTime() / 1000) + 3600;
      await old.sign(claims(old.kid, exp));
      await db.handle.db.transaction((tx) => keys.recordIssued(old.kid, new Date(exp * 1000), tx));
      // A later, shorter token never lowers the mark.
      await keys.recordIssued(old.kid, new Date((exp - 60) * 1000));

      const rotated = await keys.rotate();
      expect(rotated.previousKid).toBe(old.kid);
      expect(keys.signer().kid).toBe(rotated.kid);
      const kids = async () => (await keys.jwks(clock.now())).keys.map((k) => k.kid);
      expect(await kids()).toEqual(expect.arrayContaining([old.kid, rotated.kid]));

      clock.set((exp - 1) * 1000);
      expect(await kids()).toContain(old.kid);
      clock.set(exp * 1000);
      expect(await kids()).not.toContain(old.kid);
      expect(await kids()).toContain(rotated.kid);
    });

    it("refresh() picks up a rotation made by another instance", async () => {
      const repos = createRepos(db.handle.db);
      const clock = new FakeClock();
      const secret = kek();
      const a = new KeyManager({ signingKeys: repos.signingKeys, kek: secret, clock });
      const b = new KeyManager({ signingKeys: repos.signingKeys, kek: secret, clock });
      await a.rotate();
      await b.ensureActiveKey();
      const { kid } = await a.rotate();
      expect(b.signer().kid).not.toBe(kid);
      await b.refresh();
      expect(b.signer().kid).toBe(kid);
    });

    it("a burst of refresh() calls costs two reads, and a call after a rotation sees it", async () => {
      const repos = createRepos(db.handle.db);
      const clock = new FakeClock();
      const secret = kek();
      let reads = 0;
      const counted = {
        ...repos.signingKeys,
        getActive: () => {
          reads++;
          return repos.signingKeys.getActive();
        },
      };
      const a = new KeyManager({ signingKeys: repos.signingKeys, kek: secret, clock });
      const b = new KeyManager({ signingKeys: counted, kek: secret, clock });
      await a.rotate();
      await b.ensureActiveKey();
      reads = 0;
      const running = b.refresh();
      await Promise.resolve(); // its read has begun: the burst queues one more
      const burst = Array.from({ length: 50 }, () => b.refresh());
      expect(await Promise.all([running, ...burst])).toEqual(Array(51).fill(true));
      expect(reads).toBe(2);

      const first = b.refresh();
      const { kid } = await a.rotate();
      const second = b.refresh();
      await Promise.all([first, second]);
      expect(b.signer().kid).toBe(kid);
    });
  });
}

describe("KeyManager options", () => {
  it("refuses a KEK that is not 32 bytes", () => {
    const repos = {} as ReturnType<typeof createRepos>;
    expect(
      () =>
        new KeyManager({ signingKeys: repos.signingKeys, kek: new Uint8Array(16), clock: new FakeClock() }),
    ).toThrow();
  });
});

describe("JWKS and rotation routes", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await createHarness();
  }, 60_000);
  afterAll(() => h.close());

  it("publishes the active key to anyone, without private parts", async () => {
    const res = await call(h, "GET", "/.well-known/jwks.json", { token: null });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { keys: Record<string, string>[] };
    expect(body.keys).toContainEqual({
      kty: "OKP",
      crv: "Ed25519",
      x: expect.any(String),
      kid: h.keys.signer().kid,
      alg: "EdDSA",
      use: "sig",
    });
    for (const k of body.keys) expect(k).not.toHaveProperty("d");
  });

  it("after a rotation, old tokens still verify and new tokens carry the new kid", async () => {
    const { campaignId } = await seedOpen(h);
    const issue = async (ref: string) =>
      (
        await callJson<{ token: string }>(h, "POST", "/v1/links", {
          body: { campaignId, phase: "open", volunteer: { ref }, scopes: ["calls:read"] },
        })
      ).body.token;
    const oldToken = await issue("before");
    const oldKid = decodePart(oldToken, 0).kid;

    const rotated = await callJson<{ kid: string; previousKid: string }>(h, "POST", "/v1/keys/rotate");
    expect(rotated.status).toBe(201);
    expect(rotated.body.previousKid).toBe(oldKid);
    expect(rotated.body.kid).not.toBe(oldKid);
    expect(h.published.at(-1)).toMatchObject({
      change: { type: "signing-key", kid: rotated.body.kid, publicJwk: { kty: "OKP", crv: "Ed25519" } },
    });
    expect(h.audit.events.at(-1)).toMatchObject({ type: "key.rotated", actor: "admin" });

    const newToken = await issue("after");
    expect(decodePart(newToken, 0).kid).toBe(rotated.body.kid);

    const verifier = await verifierFor(h);
    expect((await verifier.verify(oldToken)).ok).toBe(true);
    expect((await verifier.verify(newToken)).ok).toBe(true);
  });

  it("revokes a key: it leaves the JWKS, the change is logged and audited; 404 unknown, 409 again", async () => {
    const { campaignId } = await seedOpen(h);
    const before = (await callJson<{ kid: string }>(h, "POST", "/v1/keys/rotate")).body.kid;
    const rotated = await callJson<{ kid: string; previousKid: string }>(h, "POST", "/v1/keys/rotate");
    const retired = rotated.body.previousKid;
    expect(retired).toBe(before);

    const r = await callJson<{ kid: string; rotatedTo: string | null }>(
      h,
      "POST",
      `/v1/keys/${retired}/revoke`,
      {
        body: { reason: "leaked" },
      },
    );
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ kid: retired, rotatedTo: null });
    expect(h.published.at(-1)).toMatchObject({
      change: { type: "signing-key-revoked", kid: retired, reason: "leaked" },
    });
    expect(h.audit.events.at(-1)).toMatchObject({
      type: "key.revoked",
      actor: "admin",
      data: { kid: retired, reason: "leaked", rotatedTo: null },
    });
    const jwks = await callJson<{ keys: { kid: string }[] }>(h, "GET", "/.well-known/jwks.json");
    expect(jwks.body.keys.map((k) => k.kid)).not.toContain(retired);
    expect(jwks.body.keys.map((k) => k.kid)).toContain(rotated.body.kid);

    expect(
      (await callJson(h, "POST", `/v1/keys/${retired}/revoke`, { body: { reason: "again" } })).status,
    ).toBe(409);
    expect((await callJson(h, "POST", "/v1/keys/nope/revoke", { body: { reason: "x" } })).status).toBe(404);
    const coordinator = await createKey(h, "coordinator", campaignId);
    expect(
      (
        await callJson(h, "POST", `/v1/keys/${rotated.body.kid}/revoke`, {
          body: { reason: "x" },
          token: coordinator.key,
        })
      ).status,
    ).toBe(403);

    // The active key: a new one is rotated in first, and signs from then on.
    const active = await callJson<{ kid: string; rotatedTo: string | null }>(
      h,
      "POST",
      `/v1/keys/${rotated.body.kid}/revoke`,
      { body: { reason: "leaked too" } },
    );
    expect(active.status).toBe(200);
    expect(active.body.rotatedTo).toBeTruthy();
    expect(h.keys.signer().kid).toBe(active.body.rotatedTo);
  });

  it("only an admin may rotate", async () => {
    const { campaignId } = await seedOpen(h);
    const key = await createKey(h, "coordinator", campaignId);
    const res = await callJson(h, "POST", "/v1/keys/rotate", { token: key.key });
    expect(res.status).toBe(403);
    expect((await callJson(h, "POST", "/v1/keys/rotate", { token: null })).status).toBe(401);
  });
});
