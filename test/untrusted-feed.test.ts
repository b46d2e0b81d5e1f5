/**
 * Nothing but Postgres is trusted: a token service and two gateways over one real Postgres, each
 * with its own RedisBus. An attacker with write access to Redis only publishes (raw PUBLISH on
 * the real channel names) forged and replayed messages of every kind; no decision changes, and a
 * real revocation made afterwards still reaches both gateways. Then key compromise:
 * `POST /v1/keys/:kid/revoke` takes a key out of the JWKS and off every gateway's ring.
 */

import { currentPolicyVersion } from "@phaselock/db";
import { createTestDatabase } from "@phaselock/db/testing";
import type { LinkClaims } from "@phaselock/policy";
import { createRedisClient, type RedisClient } from "@phaselock/state";
import { describeIntegration, TEST_REDIS_URL, uniquePrefix } from "@phaselock/testkit";
import type { LinkSigner } from "@phaselock/token-service";
import { generateSigningKey, signLink } from "@phaselock/tokens";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { errorCode, type IssuedLink, issue, pb, redeem, seedOpen } from "./support/client.ts";
import { redisFeed } from "./support/feeds.ts";
import { ISSUER, type Stack, startStack } from "./support/stack.ts";

/** The propagation bound the tests allow a real change (generous on a loaded CI machine). */
const BOUND = { timeout: 3000, interval: 20 };
const ok = { status: 200, code: null };
const invalid = { status: 401, code: "token_invalid" };

describeIntegration("the change feed carries no authority (Postgres + Redis)", ["postgres", "redis"], () => {
  const prefix = uniquePrefix("e2e-untrusted");
  let stack: Stack;
  let attacker: RedisClient;
  let listener: RedisClient;
  /** Real messages seen on the channels, to replay. */
  const seen: { channel: string; message: string }[] = [];
  let seed: Awaited<ReturnType<typeof seedOpen>>;
  let link: IssuedLink;

  /** `credential` on `/pb` at both gateways (a session: a link token there is `session_required`). */
  const onBoth = async (
    credential: string,
    want: { status: number; code: string | null },
    path = "/calls/next",
  ) => {
    await vi.waitFor(async () => {
      for (const g of stack.gateways) {
        const res = await pb(g.app, path, { bearer: credential });
        const body = await res.text();
        let code: string | null = null;
        try {
          code = (JSON.parse(body) as { error?: { code?: string } }).error?.code ?? null;
        } catch {}
        expect({ status: res.status, code }, `${g.name} ${path}`).toEqual(want);
      }
    }, BOUND);
  };
  /** A link's session, as a redemption would open it. */
  const sessionOf = (token: string) => stack.session(token);
  /**
   * A forged link reaches no member data on either gateway: on `/pb` a link token is
   * `session_required`, and its landing page (where a session would be redeemed) is `token_invalid`.
   */
  const forgedRefused = async (token: string) => {
    await onBoth(token, { status: 401, code: "session_required" }, "/members/export");
    await onBoth(token, { status: 401, code: "session_required" });
    await landingOnBoth(token, invalid);
  };
  /** GET `/l/<token>` (JSON; the landing page consumes no use) at both gateways. */
  const landingOnBoth = async (token: string, want: { status: number; code: string | null }) => {
    await vi.waitFor(async () => {
      for (const g of stack.gateways) {
        const res = await g.app.request(`/l/${token}`, { headers: { accept: "application/json" } });
        expect({ status: res.status, code: await errorCode(res) }, `${g.name} /l`).toEqual(want);
      }
    }, BOUND);
  };
  /** Waits until every gateway's bus has reported `n` more heartbeats (so it read the log since). */
  const heartbeats = async (n = 2) => {
    const marks = stack.gateways.map((g) => g.feed.length);
    await vi.waitFor(() => {
      stack.gateways.forEach((g, i) => {
        expect(g.feed.slice(marks[i]).filter((s) => s === "heartbeat").length).toBeGreaterThanOrEqual(n);
      });
    }, BOUND);
  };

  beforeAll(async () => {
    stack = await startStack({
      db: await createTestDatabase(),
      feed: redisFeed({ url: TEST_REDIS_URL, prefix, heartbeatMs: 100 }),
      gateways: 2,
    });
    attacker = createRedisClient(TEST_REDIS_URL, { enableOfflineQueue: true });
    listener = createRedisClient(TEST_REDIS_URL, { enableOfflineQueue: true });
    listener.on("message", (channel: string, message: string) => void seen.push({ channel, message }));
    await listener.subscribe(`${prefix}changes`, `${prefix}heartbeat`);
    await vi.waitFor(() => {
      for (const g of stack.gateways) expect(g.feed).toContain("heartbeat");
    }, BOUND);
    seed = await seedOpen(stack);
    link = await issue(stack, { campaignId: seed.campaignId, phase: seed.phase });
    await stack.synced();
  });

  afterAll(async () => {
    await listener?.quit();
    await attacker?.quit();
    await stack?.close();
  });

  describe("forged and replayed messages", () => {
    it("change no decision, cannot run the version ahead, and a real revocation still arrives", async () => {
      // The campaign keeps only calls:read: member reads are refused not_entitled.
      const narrowed = await stack.api("PUT", `/v1/campaigns/${seed.campaignId}/entitlements/${seed.phase}`, {
        body: { scopes: ["calls:read"] },
      });
      expect(narrowed.status).toBe(200);
      await stack.synced();
      await onBoth(await sessionOf(link.token), ok);
      await onBoth(await sessionOf(link.token), { status: 403, code: "not_entitled" }, "/members/m_000001");
      expect(seen.some((m) => m.channel === `${prefix}changes`)).toBe(true);

      const version = await currentPolicyVersion(stack.db.handle.db);
      const now = stack.clock.now();
      const nowS = Math.floor(now.getTime() / 1000);
      const evil = await generateSigningKey();
      const realKid = stack.tokenService.deps.keys.signer().kid;
      const forgedClaims: LinkClaims = {
        iss: ISSUER,
        aud: "phaselock-gateway",
        sub: "attacker",
        jti: "lnk_doesnotexist",
        iat: nowS,
        nbf: nowS,
        exp: nowS + 3600,
        cmp: seed.campaignId,
        cst: seed.contestId,
        phs: seed.phase,
        scp: ["calls:read", "members:read", "members:export"],
      };
      const forgedToken = await signLink({ kid: evil.kid, privateKey: evil.privateKey }, forgedClaims);

      const iso = now.toISOString();
      const changes: unknown[] = [
        { type: "signing-key", kid: evil.kid, publicJwk: { ...evil.publicJwk } },
        {
          type: "entitlement",
          campaignId: seed.campaignId,
          phase: seed.phase,
          scopes: ["calls:read", "calls:write", "members:read", "members:export"],
        },
        {
          type: "revocation",
          revocation: {
            id: "rev_forged",
            scope: "all",
            reason: "x",
            actor: "x",
            effectiveAt: iso,
            createdAt: iso,
          },
        },
        {
          type: "contest",
          contest: {
            id: seed.contestId,
            name: "closed",
            phases: [
              {
                name: seed.phase,
                startsAt: "2000-01-01T00:00:00Z",
                endsAt: "2000-01-02T00:00:00Z",
                memberData: true,
              },
            ],
          },
        },
        { type: "campaign", campaign: { id: seed.campaignId, name: "x", contestId: "nowhere", limits: {} } },
        { type: "signing-key-revoked", kid: realKid, reason: "forged" },
        { type: "link-suspended", linkId: link.id, reason: "forged" },
        { type: "api-key-deleted", id: "key_whatever" },
      ];
      const changesChannel = `${prefix}changes`;
      const heartbeatChannel = `${prefix}heartbeat`;
      // Every kind as a full message at the next versions, then again far ahead.
      for (const [i, change] of changes.entries()) {
        await attacker.publish(changesChannel, JSON.stringify({ version: version + 1 + i, change }));
        await attacker.publish(changesChannel, JSON.stringify({ version: 9_000_000_000 + i, change }));
      }
      // Bare hints: the next version, one far ahead, the largest there is; garbage of every sort.
      for (const raw of [
        JSON.stringify({ version: version + 1 }),
        JSON.stringify({ version: Number.MAX_SAFE_INTEGER }),
        "not json",
        "{}",
        JSON.stringify({ version: -1 }),
        JSON.stringify({ version: "1" }),
        "x".repeat(100_000),
      ]) {
        await attacker.publish(changesChannel, raw);
        await attacker.publish(heartbeatChannel, raw);
      }
      // Replays of every real message seen so far (hints and heartbeat nonces) on both channels.
      for (const m of seen.slice(0, 200)) {
        await attacker.publish(m.channel, m.message);
        await attacker.publish(m.channel === changesChannel ? heartbeatChannel : changesChannel, m.message);
      }
      await heartbeats(3);

      for (const g of stack.gateways) {
        expect(g.wiring.state.status().version, g.name).toBe(version);
        expect(g.wiring.state.isFresh(), g.name).toBe(true);
        expect(g.wiring.ring.get(evil.kid), g.name).toBeUndefined();
      }
      await forgedRefused(forgedToken);
      await onBoth(await sessionOf(link.token), ok);
      await onBoth(await sessionOf(link.token), { status: 403, code: "not_entitled" }, "/members/m_000001");

      // A real revocation, after all of that: version + 1 in Postgres, applied by both.
      const r = await stack.api("POST", "/v1/revocations", {
        body: { scope: "link", linkId: link.id, reason: "real" },
      });
      expect(r.status).toBe(201);
      await onBoth(await sessionOf(link.token), { status: 403, code: "revoked" });
      for (const g of stack.gateways) expect(g.wiring.state.status().version).toBe(version + 1);
    });
  });

  describe("POST /v1/keys/:kid/revoke", () => {
    it("takes a retired key out of the JWKS and off both gateways: what it signs is token_invalid", async () => {
      const s = await seedOpen(stack);
      const old = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
      // Captured before rotating: an attacker holding the retired key's private half.
      const stolen: LinkSigner = stack.tokenService.deps.keys.signer();
      const session = (await redeem(stack.gateways[0]!.app, old.token)).cookie!;
      expect(session).toMatch(/^pl_session=/);

      const rotated = await stack.api<{ kid: string; previousKid: string }>("POST", "/v1/keys/rotate");
      expect(rotated.status).toBe(201);
      expect(rotated.body.previousKid).toBe(stolen.kid);
      const all = await stack.api("POST", "/v1/revocations", {
        body: { scope: "all", reason: "compromise" },
      });
      expect(all.status).toBe(201);
      await stack.advance(1000);
      const fresh = await issue(stack, { campaignId: s.campaignId, phase: s.phase });

      // Freshly signed with the retired key (iat now, the jti of a link that key signed): not covered by the
      // `all` watermark. (A jti of another key's link is refused outright: redemption requires the link's
      // stored kid.) Only a redemption opens a session, so what the key can still do is open the landing page.
      const nowS = Math.floor(stack.clock.now().getTime() / 1000);
      const forged = await stolen.sign({
        iss: ISSUER,
        aud: "phaselock-gateway",
        sub: "attacker",
        jti: old.id,
        iat: nowS,
        nbf: nowS,
        exp: nowS + 3600,
        cmp: s.campaignId,
        cst: s.contestId,
        phs: s.phase,
        scp: ["calls:read"],
      });
      await landingOnBoth(forged, ok);
      await onBoth(forged, { status: 401, code: "session_required" });

      const revoked = await stack.api<{ kid: string; rotatedTo: string | null }>(
        "POST",
        `/v1/keys/${stolen.kid}/revoke`,
        { body: { reason: "private key leaked" } },
      );
      expect(revoked.status).toBe(200);
      expect(revoked.body).toMatchObject({ kid: stolen.kid, rotatedTo: null });
      const jwks = await stack.tokenService.app.request("/.well-known/jwks.json");
      const kids = ((await jwks.json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
      expect(kids).not.toContain(stolen.kid);
      expect(kids).toContain(rotated.body.kid);

      await forgedRefused(forged);
      await onBoth(await sessionOf(old.token), invalid);
      for (const g of stack.gateways) {
        const res = await pb(g.app, "/calls/next", { cookie: session });
        expect(res.status, `${g.name} session`).toBe(401);
      }
      await onBoth(await sessionOf(fresh.token), ok);

      // Audited; a second revoke is 409, an unknown kid 404.
      await stack.advance(0);
      const events = await stack.api<{ items: { type: string; data: Record<string, unknown> }[] }>(
        "GET",
        "/v1/audit?limit=200",
      );
      expect(events.body.items.filter((e) => e.type === "key.revoked").map((e) => e.data)).toContainEqual(
        expect.objectContaining({ kid: stolen.kid, reason: "private key leaked", rotatedTo: null }),
      );
      const again = await stack.api("POST", `/v1/keys/${stolen.kid}/revoke`, { body: { reason: "again" } });
      expect([again.status, again.body.code]).toEqual([409, "conflict"]);
      const unknown = await stack.api("POST", "/v1/keys/nope/revoke", { body: { reason: "x" } });
      expect([unknown.status, unknown.body.code]).toEqual([404, "not_found"]);
      const bad = await stack.api("POST", `/v1/keys/${rotated.body.kid}/revoke`, { body: {} });
      expect([bad.status, bad.body.code]).toEqual([400, "validation"]);
    });

    it("revoking the active key rotates a new one in first; its links stop, new links work", async () => {
      const s = await seedOpen(stack);
      const before = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
      const active = stack.tokenService.deps.keys.signer().kid;
      await stack.synced();
      await onBoth(await sessionOf(before.token), ok);

      const r = await stack.api<{ kid: string; rotatedTo: string | null }>(
        "POST",
        `/v1/keys/${active}/revoke`,
        {
          body: { reason: "compromise of the active key" },
        },
      );
      expect(r.status).toBe(200);
      expect(r.body.rotatedTo).not.toBeNull();
      expect(r.body.rotatedTo).not.toBe(active);
      expect(stack.tokenService.deps.keys.signer().kid).toBe(r.body.rotatedTo);
      await onBoth(await sessionOf(before.token), invalid);

      const after = await issue(stack, { campaignId: s.campaignId, phase: s.phase });
      await onBoth(await sessionOf(after.token), ok);
      const jwks = await stack.tokenService.app.request("/.well-known/jwks.json");
      const kids = ((await jwks.json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
      expect(kids).not.toContain(active);
      expect(kids).toContain(r.body.rotatedTo);
    });
  });
});
