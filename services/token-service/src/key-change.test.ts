import { randomBytes } from "node:crypto";
import { treeSize } from "@phaselock/audit";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { issueLinks } from "./issuance.ts";
import {
  ADMIN_PRINCIPAL,
  call,
  createHarness,
  decodePart,
  type Harness,
  openPhaseRequest,
  seedOpen,
  verifierFor,
} from "./test-support.ts";

// Two token-service instances on one database; neither hears the other's feed hints (each has a
// bus of its own), as when a publish failed or the feed was down.
let a: Harness;
let b: Harness;
beforeAll(async () => {
  const kek = randomBytes(32).toString("hex");
  a = await createHarness({ kek });
  b = await createHarness({ handle: a.handle, kek });
}, 60_000);
afterAll(async () => {
  await b.close();
  await a.close();
});

const admin = ADMIN_PRINCIPAL;
const request = openPhaseRequest;

const linkCount = async (h: Harness, campaignId: string): Promise<number> =>
  (await h.deps.repos.links.list({ campaignId, limit: 100, now: h.clock.now() })).items.length;

describe("a signing key another instance retired or revoked", () => {
  it("signs no link that is handed out: the batch is refused, nothing is written, the next one signs with the active key", async () => {
    const { campaignId } = await seedOpen(a);
    const old = b.keys.signer().kid;
    expect((await call(a, "POST", "/v1/keys/rotate")).status).toBeLessThan(300);
    const active = a.keys.signer().kid;
    expect(active).not.toBe(old);
    // No hint reached b: it still holds the retired key.
    expect(b.keys.signer().kid).toBe(old);

    const events = await treeSize(a.handle.db);
    const refused = await issueLinks(
      b.deps,
      { principal: admin, requestId: "r" },
      request(campaignId, ["v"]),
    ).catch((e: unknown) => e);
    expect(refused).toMatchObject({ code: "unavailable" });
    expect(await linkCount(a, campaignId)).toBe(0);
    expect(await treeSize(a.handle.db)).toBe(events);
    // The refusal reloaded the key: the retired one's mark was not raised by the refused batch.
    expect(b.keys.signer().kid).toBe(active);
    const retired = (await a.deps.repos.signingKeys.listPublished(a.clock.now())).find((k) => k.kid === old);
    expect(retired?.lastExpiresAt ?? null).toBeNull();

    const [link] = await issueLinks(b.deps, { principal: admin, requestId: "r" }, request(campaignId, ["v"]));
    expect(decodePart(link!.token, 0).kid).toBe(active);
    expect(await (await verifierFor(a)).verify(link!.token)).toMatchObject({ ok: true });
  });

  it("is replaced when the feed reports it reconnected or lost a message", async () => {
    for (const status of ["connected", "gap"] as const) {
      const held = b.keys.signer().kid;
      const revoked = await call(a, "POST", `/v1/keys/${held}/revoke`, { body: { reason: "stolen" } });
      expect(revoked.status).toBeLessThan(300);
      const active = a.keys.signer().kid;
      expect(active).not.toBe(held);
      expect(b.keys.signer().kid).toBe(held);
      b.feedStatus(status);
      await vi.waitFor(() => expect(b.keys.signer().kid).toBe(active));
    }
  });
});
