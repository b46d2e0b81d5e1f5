import type { AuditEvent } from "@phaselock/audit";
import { T0_SECONDS } from "@phaselock/tokens/testing";
import { describe, expect, it } from "vitest";
import { errorCode, gatewayFixture } from "./test-support.ts";

describe("an answer carrying member data waits for its audit event", () => {
  it("sends the 200 only after recordDurable resolved, with the allow event", async () => {
    const g = await gatewayFixture();
    let release: () => void = () => {};
    const durable: AuditEvent[] = [];
    g.audit.recordDurable = (e) => {
      durable.push(e);
      return new Promise<void>((resolve) => {
        release = resolve;
      });
    };
    const token = await g.session();
    let answered = false;
    const pending = Promise.resolve(g.bearer(token, "/pb/calls/next")).then((r) => {
      answered = true;
      return r;
    });
    await new Promise((r) => setImmediate(r));
    for (let i = 0; i < 50 && durable.length === 0; i++) await new Promise((r) => setImmediate(r));
    expect(durable).toEqual([expect.objectContaining({ type: "access", decision: "allow" })]);
    expect(answered).toBe(false);
    release();
    expect((await pending).status).toBe(200);
  });

  it("answers 503 unavailable, with no member data, when the event cannot be made durable", async () => {
    const g = await gatewayFixture();
    g.audit.recordDurable = async () => {
      throw new Error("database gone");
    };
    const res = await g.bearer(await g.session(), "/pb/calls/next");
    expect(res.status).toBe(503);
    expect(await errorCode(res)).toBe("unavailable");
  });

  it("keeps denials on the batched path", async () => {
    const g = await gatewayFixture();
    let durableCalls = 0;
    g.audit.recordDurable = async () => {
      durableCalls++;
    };
    const res = await g.bearer(await g.session({ scp: ["calls:read"] }), "/pb/members/m_1");
    expect(res.status).toBe(403);
    expect(durableCalls).toBe(0);
    expect(g.events().at(-1)).toMatchObject({ type: "access", decision: "deny" });
  });
});

describe("landing-page refusals are recorded (the dead-link report counts them)", () => {
  it("a leftover link clicked three times writes three deny events naming it", async () => {
    const g = await gatewayFixture();
    const token = await g.issue({ jti: "lnk_leftover" });
    g.revocations.add({
      id: "rev_1",
      scope: "link",
      linkId: "lnk_leftover",
      reason: "test",
      actor: "admin",
      effectiveAt: new Date(T0_SECONDS * 1000),
    });
    for (let i = 0; i < 3; i++) expect((await g.get(`/l/${token}`)).status).not.toBe(200);
    const refused = g.events().filter((e) => e.linkId === "lnk_leftover");
    expect(refused).toHaveLength(3);
    for (const e of refused)
      expect(e).toMatchObject({
        type: "access",
        decision: "deny",
        reason: "revoked",
        data: { route: "GET /l/:token" },
      });
  });

  it("a garbage token on the landing page is an anonymous denial, naming no link", async () => {
    const g = await gatewayFixture();
    const before = g.events().length;
    expect((await g.get("/l/not-a-token")).status).toBe(401);
    expect(g.events().slice(before)).toEqual([
      expect.objectContaining({ type: "access", decision: "deny", reason: "token_invalid", linkId: null }),
    ]);
  });
});
