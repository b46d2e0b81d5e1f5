/**
 * One environment without TOKEN_SERVICE_URL, as `pnpm start:token-service` and `pnpm
 * start:gateway` get it: both derive the token service's URL from TOKEN_SERVICE_PORT, so the
 * tokens carry it as `iss`, the audit log is named after it and the gateway accepts them.
 */
import { createMemoryDb } from "@phaselock/db/testing";
import { afterAll, beforeAll, expect, it } from "vitest";
import { issue, landing, MEMBER_SCOPES, putCampaign, putContest, tokenOf, uid } from "./support/client.ts";
import { memoryFeed } from "./support/feeds.ts";
import { DAY, type Stack, startStack } from "./support/stack.ts";

let stack: Stack;

beforeAll(async () => {
  const handle = await createMemoryDb();
  stack = await startStack({
    db: { handle, drop: () => handle.close() },
    feed: memoryFeed(),
    env: { TOKEN_SERVICE_PORT: "4100" },
  });
});

afterAll(async () => {
  await stack?.close();
});

it("issues tokens with iss at TOKEN_SERVICE_PORT, names the audit log after it, and the gateway accepts them", async () => {
  const now = stack.clock.now().getTime();
  const contestId = uid("leadership");
  await putContest(stack, contestId, [
    { name: "ballot", startsAt: new Date(now - DAY), endsAt: new Date(now + DAY), memberData: true },
  ]);
  const campaignId = uid("starmer");
  await putCampaign(stack, campaignId, contestId, { ballot: MEMBER_SCOPES });
  const link = await issue(stack, { campaignId, phase: "ballot" });

  const claims = JSON.parse(Buffer.from(link.token.split(".")[1]!, "base64url").toString()) as {
    iss: string;
  };
  expect(claims.iss).toBe("http://127.0.0.1:4100");
  const key = await (await stack.tokenService.app.request("/.well-known/audit-key")).text();
  expect(key.split("+")[0]).toBe("127.0.0.1:4100/audit");

  const gw = stack.gateways[0]!.app;
  expect((await landing(gw, link.token, "application/json")).status).toBe(200);
  expect((await landing(gw, tokenOf(link.url), "application/json")).status).toBe(200);
});
