/**
 * An ended phase stays ended (issue 10, item 8): the token service records closures, gateways
 * load and receive them, and a later timeline that re-opens the window revives none of the links
 * issued before the closure, while links issued after the re-opening work.
 */
import { createMemoryDb } from "@phaselock/db/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  errorCode,
  issue,
  landing,
  MEMBER_SCOPES,
  nextCall,
  putCampaign,
  putContest,
  uid,
} from "./support/client.ts";
import { memoryFeed } from "./support/feeds.ts";
import { DAY, type GatewayApp, type Stack, startStack } from "./support/stack.ts";

let stack: Stack;
let gw: GatewayApp;
const now = () => stack.clock.now().getTime();

beforeAll(async () => {
  const handle = await createMemoryDb();
  stack = await startStack({ db: { handle, drop: () => handle.close() }, feed: memoryFeed() });
  gw = stack.gateways[0]!.app;
});

afterAll(async () => {
  await stack?.close();
});

/** A running ballot and a campaign entitled in it. */
async function runningBallot() {
  const contestId = uid("leadership");
  const ballot = {
    name: "ballot",
    startsAt: new Date(now() - DAY),
    endsAt: new Date(now() + 10 * DAY),
    memberData: true,
  };
  await putContest(stack, contestId, [ballot]);
  const campaignId = uid("starmer");
  await putCampaign(stack, campaignId, contestId, { ballot: MEMBER_SCOPES });
  return { contestId, campaignId, ballot };
}

/** Replaces the contest's timeline with `phases`: the API's answer, warnings included. */
const replaceTimeline = (
  contestId: string,
  phases: Array<{ name: string; startsAt: Date; endsAt: Date; memberData: boolean }>,
) =>
  stack.api<{ warnings?: Array<{ code: string; phase: string }> }>("PUT", `/v1/contests/${contestId}`, {
    body: {
      name: "L",
      phases: phases.map((p) => ({
        ...p,
        startsAt: p.startsAt.toISOString(),
        endsAt: p.endsAt.toISOString(),
      })),
    },
  });

/** Whether a link still opens: its landing page (which consumes nothing) and its refusal code. */
async function opens(token: string): Promise<{ status: number; code: string | null }> {
  const res = await landing(gw, token, "application/json");
  return { status: res.status, code: res.status === 200 ? null : await errorCode(res) };
}

/** The JSON refusal's message for a link's landing page. */
async function refusalMessage(token: string): Promise<string> {
  const res = await landing(gw, token, "application/json");
  return ((await res.json()) as { error: { message: string } }).error.message;
}

describe("a phase ended early stays ended", () => {
  it("by a timeline: re-opening the window revives no old link; a link issued after it works", async () => {
    const { contestId, campaignId, ballot } = await runningBallot();
    const old = await issue(stack, { campaignId, phase: "ballot" });
    expect(await opens(old.token)).toEqual({ status: 200, code: null });
    expect((await nextCall(gw, await stack.session(old.token))).status).toBe(200);

    // The ballot is cut short: it ended a minute ago.
    await putContest(stack, contestId, [{ ...ballot, endsAt: new Date(now() - 60_000) }]);
    await stack.synced();
    expect(await opens(old.token)).toEqual({ status: 410, code: "phase_closed" });

    // A later timeline re-opens the window: it says so, and the old link stays dead.
    await stack.advance(2000);
    const reopened = await replaceTimeline(contestId, [ballot]);
    expect(reopened.status).toBe(200);
    expect(reopened.body.warnings).toMatchObject([{ code: "phase_closed_early", phase: "ballot" }]);
    await stack.synced();
    expect(await opens(old.token)).toEqual({ status: 410, code: "phase_closed" });
    expect(await nextCall(gw, await stack.session(old.token))).toEqual({ status: 403, code: "phase_closed" });

    const fresh = await issue(stack, { campaignId, phase: "ballot" });
    expect(await opens(fresh.token)).toEqual({ status: 200, code: null });
    expect((await nextCall(gw, await stack.session(fresh.token))).status).toBe(200);
  });

  it("by the end route: the phase is over now and its links stay dead when a timeline re-opens it", async () => {
    const { contestId, campaignId, ballot } = await runningBallot();
    const old = await issue(stack, { campaignId, phase: "ballot" });
    expect(await opens(old.token)).toEqual({ status: 200, code: null });

    const ended = await stack.api("POST", `/v1/contests/${contestId}/phases/ballot/end`, {
      body: { reason: "a link list was posted publicly" },
    });
    expect(ended.status).toBe(200);
    await stack.synced();
    expect(await opens(old.token)).toEqual({ status: 410, code: "phase_closed" });
    const endedWords = await refusalMessage(old.token);
    expect(endedWords).toMatch(/^This link was for the ballot phase of .+, which ended at .+ UTC\.$/);
    const refused = await stack.api("POST", "/v1/links", {
      body: { campaignId, phase: "ballot", volunteer: { ref: uid("vol") }, scopes: MEMBER_SCOPES },
    });
    expect([refused.status, refused.body.code]).toEqual([409, "phase_closed"]);

    await stack.advance(2000);
    await putContest(stack, contestId, [ballot]);
    await stack.synced();
    expect(await opens(old.token)).toEqual({ status: 410, code: "phase_closed" });
    // It still names when the phase was switched off, not the re-opened window's end to come.
    expect(await refusalMessage(old.token)).toBe(endedWords);
    const fresh = await issue(stack, { campaignId, phase: "ballot" });
    expect(await opens(fresh.token)).toEqual({ status: 200, code: null });
  });

  it("by a timeline that cut it short to an end still to come: once over, re-opening revives no old link", async () => {
    const { contestId, campaignId, ballot } = await runningBallot();
    const old = await issue(stack, { campaignId, phase: "ballot" });
    const session = await stack.session(old.token);

    // The ballot is cut short to end in a minute; the link's exp (a week) outlives that end.
    await putContest(stack, contestId, [{ ...ballot, endsAt: new Date(now() + 60_000) }]);
    await stack.synced();
    expect(await opens(old.token)).toEqual({ status: 200, code: null });
    await stack.advance(120_000);
    expect(await opens(old.token)).toEqual({ status: 410, code: "phase_closed" });

    // "410: never will again": a later timeline re-opening the window leaves it dead.
    const reopened = await replaceTimeline(contestId, [ballot]);
    expect(reopened.body.warnings).toMatchObject([{ code: "phase_closed_early", phase: "ballot" }]);
    await stack.synced();
    expect(await opens(old.token)).toEqual({ status: 410, code: "phase_closed" });
    expect(await nextCall(gw, session)).toEqual({ status: 403, code: "phase_closed" });
    const fresh = await issue(stack, { campaignId, phase: "ballot" });
    expect(await opens(fresh.token)).toEqual({ status: 200, code: null });
  });

  it("by a timeline that postpones it while it runs: its links end now; links issued for the later run work", async () => {
    const { contestId, campaignId, ballot } = await runningBallot();
    const old = await issue(stack, { campaignId, phase: "ballot" });
    const session = await stack.session(old.token);
    expect((await nextCall(gw, session)).status).toBe(200);

    // The ballot is postponed: it starts again in an hour. Its run so far is over.
    const later = { ...ballot, startsAt: new Date(now() + 3_600_000) };
    const postponed = await replaceTimeline(contestId, [later]);
    expect(postponed.status).toBe(200);
    expect(postponed.body.warnings).toMatchObject([{ code: "phase_closed_early", phase: "ballot" }]);
    await stack.synced();
    expect(await opens(old.token)).toEqual({ status: 410, code: "phase_closed" });
    expect(await nextCall(gw, session)).toEqual({ status: 403, code: "phase_closed" });
    // A link issued ahead for the later run.
    await stack.advance(2000);
    const ahead = await issue(stack, { campaignId, phase: "ballot" });

    // "410: never will again": once the later run starts, the old link is still dead.
    await stack.advance(3_600_000);
    expect(await opens(old.token)).toEqual({ status: 410, code: "phase_closed" });
    expect(await nextCall(gw, session)).toEqual({ status: 403, code: "phase_closed" });
    expect(await opens(ahead.token)).toEqual({ status: 200, code: null });
    expect((await nextCall(gw, await stack.session(ahead.token))).status).toBe(200);
  });

  it("a link issued ahead for a phase postponed before it began: 403 (it may later, not 410), then it works", async () => {
    const contestId = uid("leadership");
    const ballot = {
      name: "ballot",
      startsAt: new Date(now() + 3_600_000),
      endsAt: new Date(now() + 10 * DAY),
      memberData: true,
    };
    await putContest(stack, contestId, [ballot]);
    const campaignId = uid("starmer");
    await putCampaign(stack, campaignId, contestId, { ballot: MEMBER_SCOPES });
    const ahead = await issue(stack, { campaignId, phase: "ballot" });

    // Postponed by two hours before it began; then the old start passes.
    const later = { ...ballot, startsAt: new Date(now() + 3 * 3_600_000) };
    const postponed = await replaceTimeline(contestId, [later]);
    expect(postponed.status).toBe(200);
    expect(postponed.body.warnings ?? []).toEqual([]);
    await stack.advance(2 * 3_600_000);
    const res = await landing(gw, ahead.token, "application/json");
    expect([res.status, await errorCode(res)]).toEqual([403, "phase_closed"]);
    expect(await refusalMessage(ahead.token)).toContain("now starts at");

    await stack.advance(3_600_000 + 1000);
    expect(await opens(ahead.token)).toEqual({ status: 200, code: null });
  });

  it("never issues a link dead on arrival: not within the second of the closure, even once re-opened", async () => {
    const { contestId, campaignId, ballot } = await runningBallot();
    const ended = await stack.api("POST", `/v1/contests/${contestId}/phases/ballot/end`, {
      body: { reason: "switched off by mistake" },
    });
    expect(ended.status).toBe(200);
    // Re-opened at once: the clock has not left the closure's second, which covers every link
    // issued in it (token times are whole seconds), so a link now would never open.
    await putContest(stack, contestId, [ballot]);
    await stack.synced();
    const body = { campaignId, phase: "ballot", volunteer: { ref: uid("vol") }, scopes: MEMBER_SCOPES };
    const refused = await stack.api<{ code: string; token?: string }>("POST", "/v1/links", { body });
    const opened = refused.body.token ? await opens(refused.body.token) : null;
    expect([refused.status, refused.body.code, opened]).toEqual([409, "phase_closed", null]);

    await stack.advance(1000);
    const fresh = await issue(stack, { campaignId, phase: "ballot" });
    expect(await opens(fresh.token)).toEqual({ status: 200, code: null });
  });

  it("survives a gateway restart: a new gateway loads the closures from Postgres", async () => {
    const { contestId, campaignId, ballot } = await runningBallot();
    const old = await issue(stack, { campaignId, phase: "ballot" });
    await stack.api("POST", `/v1/contests/${contestId}/phases/ballot/end`, { body: { reason: "leak" } });
    await stack.advance(2000);
    await putContest(stack, contestId, [ballot]);
    const restarted = await stack.startGateway("restarted");
    await stack.synced();
    const res = await landing(restarted.app, old.token, "application/json");
    expect([res.status, await errorCode(res)]).toEqual([410, "phase_closed"]);
  });
});
