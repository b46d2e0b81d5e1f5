/**
 * `pnpm screenshots`: PNGs of every console page, at laptop and phone sizes, into
 * docs/screenshots/ (committed, shown in the README). Builds the demo stack `pnpm start` builds
 * (embedded PGlite in a temporary DATA_DIR, the demo data seeded, a clock pinned so the pictures
 * do not change from run to run), serves the token service on a local port and drives Debian's
 * Chromium. Not part of `pnpm test`, so CI never rewrites committed files.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { FakeClock } from "@phaselock/core";
import { parseStackEnv } from "@phaselock/stack/src/env.ts";
import { buildStack } from "@phaselock/stack/src/stack.ts";
import { launchBrowser, VIEWPORTS } from "@phaselock/testkit/browser";
import { listen } from "./serve.ts";

const OUT = resolve(import.meta.dirname, "../../docs/screenshots");
const SHEET = [
  "ref,name,email",
  "vol-0001,Ada Lovelace,ada@example.org",
  "vol-0002,Grace Hopper,grace@example.org",
  "vol-0003,Katherine Johnson,katherine@example.org",
  "vol-0004,Alan Turing,alan@example.org",
].join("\n");

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), "phaselock-shots-"));
  const clock = new FakeClock("2026-05-01T10:00:00.000Z");
  const stack = await buildStack(
    parseStackEnv({ DATA_DIR: dataDir, AUDIT_CHECKPOINT_DIR: join(dataDir, "cp") }),
    {
      clock,
      logger: { info: () => {}, warn: () => {}, error: () => {} },
    },
  );
  const ts = await listen((req) => stack.tokenService.app.fetch(req));
  const api = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const res = await stack.tokenService.app.request(path, {
      method,
      headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
    return (await res.json()) as T;
  };
  const coordinator = await api<{ key: string }>("POST", "/v1/api-keys", {
    role: "coordinator",
    campaignId: "starmer-2020",
    label: "Starmer phone bank lead",
  });
  await api("POST", "/v1/api-keys", { role: "auditor", label: "Party audit committee" });
  const browser = await launchBrowser();
  mkdirSync(OUT, { recursive: true });
  let shots = 0;
  try {
    for (const size of ["laptop", "phone"] as const) {
      const context = await browser.newContext({
        ...VIEWPORTS[size],
        locale: "en-GB",
        timezoneId: "Europe/London",
      });
      const page = await context.newPage();
      const shot = async (name: string) => {
        await page.screenshot({ path: join(OUT, `${name}-${size}.png`), fullPage: true, scale: "css" });
        shots++;
      };
      const signIn = async (key: string) => {
        await page.goto(`${ts.url}/console/sign-in`);
        await page.getByLabel("API key").fill(key);
        await page.getByRole("button", { name: "Sign in" }).click();
        await page.waitForURL((u) => u.pathname !== "/console/sign-in");
      };

      await page.goto(`${ts.url}/console/sign-in`);
      await shot("sign-in");

      // Coordinator
      await signIn(coordinator.key);
      await page.goto(`${ts.url}/console/links/new`);
      await shot("upload");
      await page.getByLabel("Volunteers CSV").setInputFiles({
        name: "volunteers.csv",
        mimeType: "text/csv",
        buffer: Buffer.from(SHEET.replaceAll("vol-", `vol-${size}-`)),
      });
      await page.getByLabel("Phase").selectOption("ballot");
      await page.getByRole("button", { name: "Issue links" }).click();
      await page.waitForLoadState();
      if (!(await page.content()).includes("links issued"))
        throw new Error(`issuing failed: ${(await page.locator("main").textContent()) ?? ""}`);
      await shot("issued");
      await page.goto(`${ts.url}/console/links`);
      await shot("links");
      await page.getByRole("button", { name: "Revoke", exact: true }).first().click();
      await shot("revoke-confirm");
      await page.goto(`${ts.url}/console/progress`);
      await shot("progress");
      await page.getByRole("button", { name: "Sign out" }).click();

      // Admin
      await signIn(stack.adminToken);
      await page.goto(`${ts.url}/console/contests`);
      await shot("contests");
      await page.goto(`${ts.url}/console/contests/leadership-2020`);
      await shot("contest-timeline");
      await page.goto(`${ts.url}/console/contests/leadership-2020/phases/ballot/end`);
      await shot("phase-off-confirm");
      await page.goto(`${ts.url}/console/campaigns`);
      await shot("campaigns");
      await page.goto(`${ts.url}/console/campaigns/starmer-2020`);
      await shot("entitlements");
      await page.goto(`${ts.url}/console/api-keys`);
      await shot("api-keys");
      await page.goto(`${ts.url}/console/revocations`);
      await shot("revocations");
      await page.goto(`${ts.url}/console/signing-keys`);
      await shot("signing-keys");
      await page.goto(`${ts.url}/console/audit`);
      await shot("audit");
      await page.goto(`${ts.url}/console/audit/verify`);
      await shot("audit-verify");
      await page.goto(`${ts.url}/console/reports/dead-links`);
      await shot("dead-links");
      await context.close();
    }
  } finally {
    await browser.close();
    await ts.close();
    await stack.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
  console.log(`screenshots: wrote ${shots} PNGs to ${OUT}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
