/**
 * The console in a real browser (issue 13, item 3): Chromium driven by playwright-core against a
 * real stack (token service, gateway and phone bank over one Postgres) served on local ports.
 * Full flows per role — a coordinator issues links from a CSV, a volunteer opens one on a phone,
 * the coordinator revokes it and the volunteer's next request is refused; an admin switches a
 * phase off and its links are refused; an auditor verifies and exports — and axe-core finds no
 * serious or critical violation on any console page, at phone and laptop sizes.
 */
import { readFileSync } from "node:fs";
import { createTestDatabase } from "@phaselock/db/testing";
import { describeIntegration } from "@phaselock/testkit";
import { type BrowserHandle, describeBrowser, seriousAxeViolations } from "@phaselock/testkit/browser";
import { afterAll, beforeAll, expect, it } from "vitest";
import { issue, seedOpen, tokenOf } from "../support/client.ts";
import { memoryFeed } from "../support/feeds.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { type Listening, listen } from "./serve.ts";

type Context = Awaited<ReturnType<BrowserHandle["context"]>>;
type Page = Awaited<ReturnType<Context["newPage"]>>;

/** A real browser on a shared two-core machine: generous, and never a speed goal. */
const FLOW_MS = 180_000;

const SHEET = "ref,name,phone\nvol-ada,Ada Lovelace,0700 900 001\nvol-grace,Grace Hopper,0700 900 002\n";

describeIntegration("the console in a browser", ["postgres"], () => {
  describeBrowser("console flows", (browser) => {
    let stack: Stack;
    let ts: Listening;
    let gw: Listening;

    beforeAll(async () => {
      stack = await startStack({ db: await createTestDatabase(), feed: memoryFeed() });
      ts = await listen((req) => stack.tokenService.app.fetch(req));
      gw = await listen((req) => stack.gateways[0]!.app.fetch(req));
    });
    afterAll(async () => {
      await ts?.close();
      await gw?.close();
      await stack?.close();
    });

    /** A link as the volunteer's phone reaches it: the same path, on the gateway we serve. */
    const onGateway = (url: string) => `${gw.url}${new URL(url).pathname}`;

    const noSeriousViolations = async (page: Page) => {
      const found = await seriousAxeViolations(page);
      expect(found, `${page.url()}: ${JSON.stringify(found, null, 1)}`).toEqual([]);
    };

    async function signIn(size: "phone" | "laptop", key: string): Promise<Page> {
      const page = await (await browser.context(size)).newPage();
      await page.goto(`${ts.url}/console`);
      // The console's front door is the sign-in form.
      expect(new URL(page.url()).pathname).toBe("/console");
      await noSeriousViolations(page);
      await page.getByLabel("API key").fill(key);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.waitForURL((u) => u.pathname !== "/console/sign-in" && u.pathname !== "/console");
      expect(await page.content()).not.toContain(key);
      return page;
    }

    async function coordinatorKey(campaignId: string): Promise<string> {
      const res = await stack.api<{ key: string }>("POST", "/v1/api-keys", {
        body: { role: "coordinator", campaignId, label: "browser test" },
      });
      expect(res.status).toBe(201);
      return res.body.key;
    }

    it(
      "coordinator: uploads a CSV, downloads the links, a volunteer calls on a phone, a revoke refuses them",
      async () => {
        const { campaignId } = await seedOpen(stack);
        const page = await signIn("laptop", await coordinatorKey(campaignId));
        await noSeriousViolations(page);

        await page.getByRole("link", { name: "Upload volunteers" }).click();
        await page.getByLabel("Volunteers CSV").setInputFiles({
          name: "volunteers.csv",
          mimeType: "text/csv",
          buffer: Buffer.from(SHEET),
        });
        await page.getByLabel("Phase").selectOption("open");
        await noSeriousViolations(page);
        await page.getByRole("button", { name: "Issue links" }).click();
        await page.getByText("2 links issued").waitFor();
        await noSeriousViolations(page);

        // The page's script ran under the CSP: the copy buttons it reveals are there.
        expect(await page.getByRole("button", { name: "Copy link of vol-ada" }).isVisible()).toBe(true);
        const [download] = await Promise.all([
          page.waitForEvent("download"),
          page.getByRole("link", { name: "Download links (CSV)" }).click(),
        ]);
        const csv = readFileSync(await download.path(), "utf8");
        const [header, ...rows] = csv.trim().split(/\r?\n/);
        const cols = header!.split(",");
        expect(cols).toEqual(expect.arrayContaining(["ref", "name", "url", "phone"]));
        const ada = rows.map((r) => r.split(",")).find((r) => r[cols.indexOf("ref")] === "vol-ada")!;
        const url = ada[cols.indexOf("url")]!;
        expect(url).toMatch(/\/l\/[A-Za-z0-9_-]+$/);

        // The volunteer, on a phone: landing page, "Start calling", the calling page.
        const phone = await (await browser.context("phone")).newPage();
        const landing = await phone.goto(onGateway(url));
        expect(landing?.status()).toBe(200);
        await phone.getByRole("button", { name: "Start calling" }).click();
        await phone.waitForURL((u) => u.pathname === "/pb/");
        const calling = await phone.reload();
        expect(calling?.status()).toBe(200);

        // Back in the console: the links table, "Revoke" on Ada's link, the confirmation.
        await page.goto(`${ts.url}/console/links?volunteer=vol-ada`);
        await noSeriousViolations(page);
        await page.getByRole("button", { name: "Revoke", exact: true }).click();
        await page.getByText("Ada Lovelace (vol-ada)").waitFor();
        await noSeriousViolations(page);
        await page.getByRole("button", { name: "Revoke", exact: true }).click();
        await page.getByText("Revoked: 1 link stopped working.").waitFor();
        await stack.synced();

        const refused = await phone.reload();
        expect(refused?.status()).toBe(403);
        expect(await phone.content()).not.toContain("0700 900 001");

        // The progress view updates without a reload: Grace opens her link meanwhile.
        await page.goto(`${ts.url}/console/progress`);
        await page.locator(".card", { hasText: "volunteers opened their link" }).getByText("1 / 2").waitFor();
        await page.locator(".card", { hasText: "links opened" }).getByText("1 / 2").waitFor();
        await noSeriousViolations(page);
        const grace = rows.map((r) => r.split(",")).find((r) => r[cols.indexOf("ref")] === "vol-grace")!;
        const redeemed = await stack.gateways[0]!.app.request(new URL(grace[cols.indexOf("url")]!).pathname, {
          method: "POST",
          headers: { accept: "application/json" },
        });
        expect(redeemed.status).toBe(201);
        await page
          .locator(".card", { hasText: "volunteers opened their link" })
          .getByText("2 / 2")
          .waitFor({ timeout: 20_000 });
      },
      FLOW_MS,
    );

    it(
      "coordinator: the progress view's refresh leaves the table (and the focus in it) alone while nothing changes",
      async () => {
        const { campaignId } = await seedOpen(stack);
        await issue(stack, { campaignId, phase: "open" });
        const page = await signIn("laptop", await coordinatorKey(campaignId));
        await page.goto(`${ts.url}/console/progress`);
        const region = page.getByRole("region", { name: "Progress by volunteer" });
        await region.focus();
        const mark = () => region.evaluate((el) => el.hasAttribute("data-kept"));
        await region.evaluate((el) => el.setAttribute("data-kept", ""));
        // Two refreshes answered (every 5 s), and nothing to show changed.
        for (let i = 0; i < 2; i++)
          await page.waitForResponse((r) => r.url().includes("/console/progress/fragment"), {
            timeout: 20_000,
          });
        await page.waitForTimeout(200);
        expect(await mark()).toBe(true);
        expect(await region.evaluate((el) => el === el.ownerDocument.activeElement)).toBe(true);
      },
      FLOW_MS,
    );

    it(
      "coordinator: the live progress view goes to sign-in when the session ends, not into the table",
      async () => {
        const { campaignId } = await seedOpen(stack);
        const page = await signIn("phone", await coordinatorKey(campaignId));
        await page.goto(`${ts.url}/console/progress`);
        await page.locator("[data-refresh]").waitFor();
        // Signed out elsewhere (the same browser's cookie jar): the next refresh finds no session.
        const csrf = await page.locator('input[name="csrf"]').first().inputValue();
        const out = await page.request.post(`${ts.url}/console/sign-out`, {
          form: { csrf },
          maxRedirects: 0,
        });
        expect(out.status()).toBe(303);
        await page.waitForURL((u) => u.pathname === "/console/sign-in", { timeout: 30_000 });
        expect(await page.locator("html").count()).toBe(1);
        await page.getByLabel("API key").waitFor();
      },
      FLOW_MS,
    );

    it(
      "admin: switches a phase off after the confirmation, and its links are refused",
      async () => {
        const { contestId, campaignId } = await seedOpen(stack);
        const link = await issue(stack, { campaignId, phase: "open" });
        const phone = await (await browser.context("phone")).newPage();
        expect((await phone.goto(onGateway(link.url)))?.status()).toBe(200);

        const page = await signIn("laptop", stack.adminToken);
        await page.goto(`${ts.url}/console/contests`);
        await noSeriousViolations(page);
        await page.goto(`${ts.url}/console/contests/${contestId}`);
        expect(await page.locator("svg title").textContent()).toContain("open");
        await noSeriousViolations(page);
        await page.getByRole("button", { name: "Switch phase off" }).click();
        await page.getByText("1 active link of this phase").waitFor();
        await noSeriousViolations(page);
        await page.getByLabel("Reason").fill("ballot closed early");
        await page.getByRole("button", { name: "Switch phase off" }).click();
        await page.getByText("Phase open is switched off.").waitFor();
        await stack.synced();

        const refused = await phone.goto(onGateway(link.url));
        expect(refused?.status()).toBe(410);
        expect(tokenOf(link.url)).not.toBe("");
      },
      FLOW_MS,
    );

    it(
      "admin on a phone: the contests page draws every contest's timeline, its labels readable",
      async () => {
        const { contestId } = await seedOpen(stack);
        const page = await signIn("phone", stack.adminToken);
        /** The rendered height, in CSS pixels, of the phase label on the contest's timeline. */
        const labelHeight = () =>
          page
            .locator(`svg[aria-labelledby="tl-${contestId}-title"] text`, { hasText: /^open$/ })
            .evaluate((el) => el.getBoundingClientRect().height);
        for (const path of ["/console/contests", `/console/contests/${contestId}`]) {
          await page.goto(`${ts.url}${path}`);
          expect(await page.getByRole("img", { name: /^Timeline of / }).count()).toBeGreaterThan(0);
          // Scaled to a 375 px screen, 13-unit labels came out about 6 px high.
          expect(await labelHeight(), path).toBeGreaterThanOrEqual(11);
          await noSeriousViolations(page);
        }
      },
      FLOW_MS,
    );

    it(
      "admin on a phone: each phase's Save in the entitlements matrix is on screen beside its boxes",
      async () => {
        const { campaignId } = await seedOpen(stack);
        const page = await signIn("phone", stack.adminToken);
        await page.goto(`${ts.url}/console/campaigns/${campaignId}`);
        const width = page.viewportSize()!.width;
        for (const name of ["Save", "Withdraw"]) {
          const box = (await page.getByRole("button", { name, exact: true }).first().boundingBox())!;
          // The matrix scrolled sideways: the row's buttons were past the right edge of the screen.
          expect(box.x + box.width, name).toBeLessThanOrEqual(width);
        }
        expect(
          (await page.getByRole("checkbox", { name: "calls:read in open" }).boundingBox())!.x,
        ).toBeLessThan(width);
        await noSeriousViolations(page);
      },
      FLOW_MS,
    );

    it(
      "admin: one click on Rotate signing key rotates it (no script dialog to dismiss)",
      async () => {
        const jwks = async () =>
          (await stack.api<{ keys: { kid: string }[] }>("GET", "/.well-known/jwks.json")).body.keys.map(
            (k) => k.kid,
          );
        const before = await jwks();
        const page = await signIn("phone", stack.adminToken);
        let dialogs = 0;
        // Playwright dismisses a dialog nobody handles: a confirm() would cancel the submit.
        page.on("dialog", () => {
          dialogs++;
        });
        await page.goto(`${ts.url}/console/signing-keys`);
        await page.getByRole("button", { name: "Rotate signing key" }).click();
        await page.getByText("signs from now on.").waitFor();
        expect(dialogs).toBe(0);
        const after = await jwks();
        expect(after.length).toBe(before.length + 1);
        const added = after.find((k) => !before.includes(k))!;
        expect(await page.getByText(`Key ${added} signs from now on.`).count()).toBe(1);
        // The notice names the key id, one long unbroken word: it wraps, the phone's page does not scroll sideways.
        const overflow = await page.evaluate(() => {
          const root = (
            globalThis as unknown as {
              document: { documentElement: { scrollWidth: number; clientWidth: number } };
            }
          ).document.documentElement;
          return root.scrollWidth - root.clientWidth;
        });
        expect(overflow).toBeLessThanOrEqual(0);
      },
      FLOW_MS,
    );

    it(
      "auditor: verifies the audit chain and downloads the export",
      async () => {
        const key = await stack.api<{ key: string }>("POST", "/v1/api-keys", { body: { role: "auditor" } });
        const page = await signIn("phone", key.body.key);
        expect(new URL(page.url()).pathname).toBe("/console/audit");
        await noSeriousViolations(page);
        await page.getByRole("button", { name: "Verify" }).click();
        await page.getByText("ok", { exact: true }).waitFor();
        await noSeriousViolations(page);
        await page.goto(`${ts.url}/console/audit`);
        const [download] = await Promise.all([
          page.waitForEvent("download"),
          page.getByRole("link", { name: "Download export (NDJSON)" }).click(),
        ]);
        const lines = readFileSync(await download.path(), "utf8")
          .trim()
          .split("\n");
        expect(JSON.parse(lines[0]!).type).toBe("phaselock.audit.export");
        expect(JSON.parse(lines.at(-1)!).type).toBe("phaselock.audit.export.end");
      },
      FLOW_MS,
    );

    it(
      "every console page has no serious or critical axe violation, at phone and laptop sizes",
      async () => {
        const { contestId, campaignId } = await seedOpen(stack);
        const link = await issue(stack, { campaignId, phase: "open" });
        const keys = await stack.api<{ items: { id: string }[] }>("GET", "/v1/api-keys");
        const kid = (await stack.api<{ keys: { kid: string }[] }>("GET", "/.well-known/jwks.json")).body
          .keys[0]!.kid;
        const paths = [
          "/console/links",
          "/console/links/new",
          `/console/links/${link.id}/revoke`,
          `/console/volunteers/revoke?ref=vol-1&campaignId=${campaignId}`,
          // The longest ref the API accepts, one unbroken word in the confirmation's sentence.
          `/console/volunteers/revoke?ref=${"v".repeat(128)}&campaignId=${campaignId}`,
          `/console/progress?campaignId=${campaignId}`,
          "/console/contests",
          `/console/contests/${contestId}`,
          `/console/contests/${contestId}/phases/open/end`,
          "/console/campaigns",
          `/console/campaigns/${campaignId}`,
          "/console/api-keys",
          `/console/api-keys/${keys.body.items[0]?.id ?? "key_x"}/delete`,
          "/console/revocations",
          "/console/signing-keys",
          `/console/signing-keys/${kid}/revoke`,
          "/console/audit",
          "/console/audit/verify",
          "/console/reports/dead-links",
          "/console/no-such-page",
        ];
        const coordinator = await coordinatorKey(campaignId);
        const sweeps = [
          { key: stack.adminToken, paths },
          // A coordinator's own versions of its pages (no campaign column or field), and a 403.
          {
            key: coordinator,
            paths: ["/console/links", "/console/links/new", "/console/progress", "/console/audit"],
          },
        ];
        for (const size of ["phone", "laptop"] as const)
          for (const sweep of sweeps) {
            const page = await signIn(size, sweep.key);
            for (const path of sweep.paths) {
              await page.goto(`${ts.url}${path}`);
              await noSeriousViolations(page);
              // Nothing wider than the screen but the tables' own scrolling regions.
              const overflow = await page.evaluate(
                () =>
                  (
                    globalThis as unknown as {
                      document: { documentElement: { scrollWidth: number; clientWidth: number } };
                    }
                  ).document.documentElement.scrollWidth -
                  (globalThis as unknown as { document: { documentElement: { clientWidth: number } } })
                    .document.documentElement.clientWidth,
              );
              expect(overflow, `${size} ${path}`).toBeLessThanOrEqual(0);
            }
          }
      },
      10 * FLOW_MS,
    );
  });
});
