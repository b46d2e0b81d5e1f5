/**
 * A volunteer's pages in a real browser (Chromium at phone and laptop sizes) against the real
 * product: token service, gateway (served over HTTP by its own node handler) and the demo phone
 * bank, over one embedded Postgres. Open a link, Start calling, record a call with notes; the
 * coordinator revokes the link and the page's next action clears the member from the screen and
 * names whom to ask; End session signs out. axe-core finds no serious or critical violation on
 * any of these pages at either size.
 *
 * With `SCREENSHOTS_DIR` set (scripts/screenshots-volunteer.ts), each page is also saved there.
 */
import { mkdirSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createMemoryDb } from "@phaselock/db/testing";
import {
  type BrowserHandle,
  describeBrowser,
  seriousAxeViolations,
  type VIEWPORTS,
} from "@phaselock/testkit/browser";
import { afterAll, beforeAll, expect, it } from "vitest";
import { issue, seedOpen, tokenOf, uid } from "../support/client.ts";
import { memoryFeed } from "../support/feeds.ts";
import { type Stack, startStack } from "../support/stack.ts";

type Page = Awaited<ReturnType<Awaited<ReturnType<BrowserHandle["context"]>>["newPage"]>>;

const CONTACT = "Sam Organiser, volunteers@starmer-2020.example";
const SCREENSHOTS = process.env.SCREENSHOTS_DIR;

let stack: Stack;
let server: Server;
let origin: string;
let campaignId: string;
let phase: string;

beforeAll(async () => {
  const handle = await createMemoryDb();
  stack = await startStack({ db: { handle, drop: () => handle.close() }, feed: memoryFeed() });
  const seeded = await seedOpen(stack);
  ({ campaignId, phase } = seeded);
  // Names as the demo has them, for the screenshots.
  const contest = await stack.api("PUT", `/v1/contests/${seeded.contestId}`, {
    body: {
      name: "Leadership election 2020",
      phases: [
        {
          name: "open",
          startsAt: new Date(stack.clock.now().getTime() - 86_400_000).toISOString(),
          endsAt: new Date(stack.clock.now().getTime() + 30 * 86_400_000).toISOString(),
          memberData: true,
        },
      ],
    },
  });
  expect(contest.status).toBe(200);
  const put = await stack.api("PUT", `/v1/campaigns/${campaignId}`, {
    body: { name: "Keir Starmer 2020", contestId: seeded.contestId, contact: CONTACT },
  });
  expect(put.status).toBe(200);
  await stack.synced();
  server = createServer(stack.gateways[0]!.wiring.handler);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 60_000);

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
  await stack?.close();
});

/** A fresh link of the seeded campaign, as the gateway serves it here. */
async function newLink(name = "Ada Volunteer") {
  const link = await issue(stack, { campaignId, phase, volunteer: { ref: uid("vol"), name } });
  return { id: link.id, url: `${origin}/l/${tokenOf(link.url)}` };
}

async function expectAccessible(page: Page, what: string) {
  expect([what, await seriousAxeViolations(page)]).toEqual([what, []]);
}

async function shoot(page: Page, size: keyof typeof VIEWPORTS, name: string) {
  if (!SCREENSHOTS) return;
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `volunteer-${name}-${size}.png`), fullPage: true });
}

const text = (page: Page, selector: string) => page.locator(selector).textContent();

describeBrowser("a volunteer's pages in a browser", (b) => {
  it("landing → Start calling → a call recorded with notes → revoked: the member leaves the screen", async () => {
    const context = await b.context("phone");
    context.setDefaultTimeout(8000);
    const page = await context.newPage();
    // Any script or style the CSP blocked would show here.
    const blocked: string[] = [];
    page.on("console", (m) => {
      if (/Content Security Policy/i.test(m.text())) blocked.push(m.text());
    });
    const link = await newLink();

    // The landing page: what the link is for, when it ends (local time), whom to ask.
    const landing = await page.goto(link.url);
    expect(landing?.status()).toBe(200);
    await expect.poll(() => page.getByRole("heading", { level: 1 }).textContent()).toBe("Ready to call?");
    expect(await page.locator("main").textContent()).toContain(CONTACT);
    // The local-time script ran under the page's CSP: the UTC fallback became Europe/London time.
    const ends = page.locator("time").first();
    expect(await ends.getAttribute("title")).toMatch(/UTC$/);
    expect(await ends.textContent()).not.toMatch(/UTC$/);
    await expectAccessible(page, "landing (phone)");
    await shoot(page, "phone", "landing");

    // Start calling: the session opens and the calling page loads under /pb/.
    await page.getByRole("button", { name: "Start calling" }).click();
    await page.waitForURL(`${origin}/pb/`);
    expect(page.url()).not.toContain(tokenOf(link.url));
    await expect.poll(() => page.getByRole("heading", { level: 1 }).textContent()).toBe("Calling");
    await expectAccessible(page, "calling page, before a call (phone)");

    await page.getByRole("button", { name: "Next call" }).click();
    await page.locator("#card").waitFor({ state: "visible" });
    const member = await text(page, "#name");
    expect(member).toBeTruthy();
    // The notes box is above the buttons that save at once.
    const notesBox = (await page.getByLabel("Notes (optional)").boundingBox())!;
    const answered = (await page.getByRole("button", { name: "Answered" }).boundingBox())!;
    expect(notesBox.y + notesBox.height).toBeLessThanOrEqual(answered.y);
    await expectAccessible(page, "calling page, with a member (phone)");
    await shoot(page, "phone", "calling");

    await page.getByLabel("Notes (optional)").fill("Call back after 6pm");
    await page.getByRole("button", { name: "Answered" }).click();
    await expect.poll(() => text(page, "#status")).toContain("Saved");
    const recorded = stack.phonebank.seen.filter((r) => r.method === "POST" && r.status === 201);
    expect(JSON.parse(recorded.at(-1)!.body)).toMatchObject({
      call: { outcome: "answered", notes: "Call back after 6pm" },
    });

    // Next member on screen, notes typed; then the coordinator switches the link off.
    await page.getByRole("button", { name: "Next call" }).click();
    await page.locator("#card").waitFor({ state: "visible" });
    const second = (await text(page, "#name"))!;
    await page.getByLabel("Notes (optional)").fill("Half-way through the call");
    const revoked = await stack.api("POST", "/v1/revocations", {
      body: { scope: "link", linkId: link.id, reason: "volunteer left" },
    });
    expect(revoked.status).toBe(201);
    await stack.synced();

    // The page's next action is refused: name, phone and notes leave the screen, the refusal says
    // what happened and whom to ask.
    await page.getByRole("button", { name: "No answer" }).click();
    const refusal = page.getByRole("alert");
    await refusal.waitFor({ state: "visible" });
    expect(await refusal.textContent()).toContain("This link has been switched off");
    expect(await refusal.textContent()).toContain(CONTACT);
    expect(await page.locator("#card").isHidden()).toBe(true);
    expect(await text(page, "#name")).toBe("");
    expect(await text(page, "#phone")).toBe("");
    expect(await page.getByLabel("Notes (optional)").inputValue()).toBe("");
    expect(await page.locator("main").textContent()).not.toContain(second);
    expect(await page.getByRole("button", { name: "Next call" }).isDisabled()).toBe(true);
    await expectAccessible(page, "calling page, refused (phone)");
    await shoot(page, "phone", "calling-refused");

    // Opening the link again: the refusal page, 410, naming the contact.
    const again = await page.goto(link.url);
    expect(again?.status()).toBe(410);
    expect(await page.locator("main").textContent()).toContain(CONTACT);
    expect(await page.content()).not.toContain(tokenOf(link.url));
    await expectAccessible(page, "refusal page (phone)");
    await shoot(page, "phone", "refusal");
    expect(blocked).toEqual([]);
  });

  it("End session signs the device out: the signed-out page, and /pb/ refuses the old cookie", async () => {
    const context = await b.context("phone");
    context.setDefaultTimeout(8000);
    const page = await context.newPage();
    const link = await newLink();
    await page.goto(link.url);
    await page.getByRole("button", { name: "Start calling" }).click();
    await page.waitForURL(`${origin}/pb/`);
    await page.getByRole("button", { name: "End session" }).click();
    await page.waitForURL(`${origin}/signed-out`);
    expect(await page.getByRole("heading", { level: 1 }).textContent()).toBe("You are signed out");
    await expectAccessible(page, "signed-out page (phone)");
    await shoot(page, "phone", "signed-out");
    const back = await page.goto(`${origin}/pb/`);
    expect(back?.status()).toBe(401);
  });

  it("a refusal on the calling page is in a volunteer's words, not the API message", async () => {
    const context = await b.context("phone");
    context.setDefaultTimeout(8000);
    const page = await context.newPage();
    const link = await newLink();
    await page.goto(link.url);
    await page.getByRole("button", { name: "Start calling" }).click();
    await page.waitForURL(`${origin}/pb/`);
    // The session cookie goes (as when it runs out): the page's next request has no session.
    await context.clearCookies();
    await page.getByRole("button", { name: "Next call" }).click();
    const refusal = page.getByRole("alert");
    await refusal.waitFor({ state: "visible" });
    expect(await text(page, "#refused-message")).toBe(
      "This device is not signed in to the phone bank. Open the link you were sent and press Start calling.",
    );
    expect(await refusal.textContent()).not.toMatch(/Authorization|Bearer|session>/);
    expect(await text(page, "#refused-code")).toBe("token_missing");
    // The gateway's heading for it, not the page's own one for any 401 ("Calling has stopped").
    expect(await text(page, "#refused-title")).toBe("No link");
  });

  it("every volunteer page passes axe at laptop size too", async () => {
    const context = await b.context("laptop");
    context.setDefaultTimeout(8000);
    const page = await context.newPage();
    const link = await newLink();
    await page.goto(link.url);
    await expectAccessible(page, "landing (laptop)");
    await shoot(page, "laptop", "landing");
    await page.getByRole("button", { name: "Start calling" }).click();
    await page.waitForURL(`${origin}/pb/`);
    await page.getByRole("button", { name: "Next call" }).click();
    await page.locator("#card").waitFor({ state: "visible" });
    await expectAccessible(page, "calling page (laptop)");
    await shoot(page, "laptop", "calling");

    await stack.api("POST", "/v1/revocations", { body: { scope: "link", linkId: link.id, reason: "test" } });
    await stack.synced();
    await page.getByRole("button", { name: "Next call" }).click();
    await page.getByRole("alert").waitFor({ state: "visible" });
    await expectAccessible(page, "calling page, refused (laptop)");

    const refused = await page.goto(link.url);
    expect(refused?.status()).toBe(410);
    await expectAccessible(page, "refusal page (laptop)");
    await shoot(page, "laptop", "refusal");

    await page.goto(`${origin}/signed-out`);
    await expectAccessible(page, "signed-out page (laptop)");
    await shoot(page, "laptop", "signed-out");
  });
});
