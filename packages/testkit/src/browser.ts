/**
 * A real browser for tests: Debian's Chromium (installed by `.ci/run`), driven by playwright-core.
 * Never `playwright install`: the browser comes from the system package. Like the other
 * integration helpers, a suite that needs the browser skips locally when none is installed and
 * FAILS in CI.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe } from "vitest";

/** The Chromium binary: `CHROMIUM_PATH`, else what `which chromium` names. */
export function chromiumPath(): string | undefined {
  const fromEnv = process.env.CHROMIUM_PATH;
  if (fromEnv) return existsSync(fromEnv) ? fromEnv : undefined;
  for (const name of ["chromium", "chromium-browser"]) {
    try {
      const found = execFileSync("which", [name], { encoding: "utf8" }).trim();
      if (found) return found;
    } catch {
      // not on PATH: try the next name
    }
  }
  return undefined;
}

/** Launches headless Chromium with the flags this machine needs (no sandbox as root, no phoning home). */
export function launchBrowser(): Promise<Browser> {
  const executablePath = chromiumPath();
  if (!executablePath) throw new Error("Chromium is not installed (apt-get install -y chromium)");
  return chromium.launch({
    executablePath,
    headless: true,
    args: ["--no-sandbox", "--disable-background-networking", "--disable-dev-shm-usage"],
  });
}

/** A phone-sized page (375 × 740, touch, mobile user agent) or a laptop-sized one. */
export const VIEWPORTS = {
  phone: { viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2 },
  laptop: { viewport: { width: 1280, height: 800 } },
} as const;

export interface BrowserHandle {
  /** The browser, launched once for the suite. */
  readonly browser: Browser;
  /** A fresh context (own cookies) of the given size; closed with the suite. */
  context(size?: keyof typeof VIEWPORTS): Promise<BrowserContext>;
}

/**
 * A `describe` that needs Chromium. The returned handle is usable inside tests (after the suite's
 * `beforeAll` launched the browser).
 */
export function describeBrowser(name: string, fn: (b: BrowserHandle) => void): void {
  const available = chromiumPath() !== undefined;
  const ci = process.env.CI === "true";
  if (!available && !ci)
    console.warn(`[testkit] skipping "${name}": Chromium not installed (with CI=true this fails)`);
  describe.skipIf(!available && !ci)(name, () => {
    let browser: Browser | undefined;
    const contexts: BrowserContext[] = [];
    beforeAll(async () => {
      if (!available)
        throw new Error(
          `"${name}" needs Chromium, which is not installed; CI=true requires browser suites to run`,
        );
      browser = await launchBrowser();
    });
    afterAll(async () => {
      for (const c of contexts) await c.close().catch(() => {});
      await browser?.close();
    });
    fn({
      get browser() {
        if (!browser) throw new Error("the browser is launched in beforeAll");
        return browser;
      },
      async context(size = "laptop") {
        if (!browser) throw new Error("the browser is launched in beforeAll");
        const ctx = await browser.newContext({
          ...VIEWPORTS[size],
          locale: "en-GB",
          timezoneId: "Europe/London",
        });
        contexts.push(ctx);
        return ctx;
      },
    });
  });
}

export interface AxeViolation {
  id: string;
  impact: string | null;
  help: string;
  nodes: string[];
}

const axeSource: string = (() => {
  const require = createRequire(import.meta.url);
  return (require("axe-core") as { source: string }).source;
})();

/**
 * Runs axe-core (WCAG 2 A/AA rules) on the page and answers the serious and critical violations.
 * axe is injected through the DevTools protocol's evaluate, not a <script> tag, so it works under
 * the pages' strict CSP.
 */
export async function seriousAxeViolations(page: Page): Promise<AxeViolation[]> {
  await page.evaluate(axeSource);
  const result = (await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run: (ctx: unknown, opts: unknown) => Promise<unknown> } })
      .axe;
    return axe.run((globalThis as unknown as { document: unknown }).document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
    });
  })) as { violations: { id: string; impact: string | null; help: string; nodes: { target: string[] }[] }[] };
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => n.target.join(" ")),
    }));
}
