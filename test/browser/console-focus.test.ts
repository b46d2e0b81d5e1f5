/**
 * The console's keyboard focus in a real browser (Chromium, phone and laptop sizes) against the
 * real token service over an embedded database: wherever the focus lands, its ring stands out
 * from what lies beside it (WCAG 2.1 1.4.11: 3:1), on the white page and on the dark header alike.
 */
import { createMemoryDb } from "@phaselock/db/testing";
import { describeBrowser } from "@phaselock/testkit/browser";
import { afterAll, beforeAll, expect, it } from "vitest";
import { memoryFeed } from "../support/feeds.ts";
import { type Stack, startStack } from "../support/stack.ts";
import { type Listening, listen } from "./serve.ts";

let stack: Stack;
let ts: Listening;

beforeAll(async () => {
  const handle = await createMemoryDb();
  stack = await startStack({ db: { handle, drop: () => handle.close() }, feed: memoryFeed() });
  ts = await listen((req) => stack.tokenService.app.fetch(req));
}, 60_000);

afterAll(async () => {
  await ts?.close();
  await stack?.close();
});

/** WCAG's contrast ratio of two `rgb(…)` colours as getComputedStyle gives them. */
function contrast(a: string, b: string): number {
  const luminance = (css: string) => {
    const [r, g, bl] = (css.match(/[\d.]+/g) ?? []).slice(0, 3).map((v) => {
      const c = Number(v) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * (r ?? 0) + 0.7152 * (g ?? 0) + 0.0722 * (bl ?? 0);
  };
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x) as [number, number];
  return (hi + 0.05) / (lo + 0.05);
}

describeBrowser("the console's focus ring in a browser", (b) => {
  for (const size of ["phone", "laptop"] as const)
    it(`stands out on the page and on the header when tabbing through the console (${size})`, async () => {
      const page = await (await b.context(size)).newPage();
      await page.goto(`${ts.url}/console`);
      await page.getByLabel("API key").fill(stack.adminToken);
      await page.getByRole("button", { name: "Sign in" }).click();
      await page.waitForURL((u) => u.pathname === "/console/contests");
      const seen: { where: string; what: string; ratio: number }[] = [];
      for (let i = 0; i < 20; i++) {
        await page.keyboard.press("Tab");
        // As a string: this package's types know no DOM.
        const ring = (await page.evaluate(`(() => {
          const el = document.activeElement;
          // Past the last control the focus leaves the page (the browser's own UI).
          if (el === document.body) return null;
          const style = getComputedStyle(el);
          // The skip link shows over the header: the header is what its ring is seen against.
          const header = el.closest("header.top") ?? (el.closest(".skip") ? document.querySelector("header.top") : null);
          return {
            where: header ? "header" : "main",
            what: el.tagName + " " + (el.textContent ?? "").trim().slice(0, 20),
            outline: style.outlineStyle === "none" ? "" : style.outlineColor,
            ground: getComputedStyle(header ?? document.body).backgroundColor,
          };
        })()`)) as { where: string; what: string; outline: string; ground: string } | null;
        if (ring === null) continue;
        seen.push({
          where: ring.where,
          what: ring.what,
          ratio: ring.outline ? contrast(ring.outline, ring.ground) : 0,
        });
      }
      expect(seen.some((s) => s.where === "main")).toBe(true);
      expect(seen.some((s) => s.where === "header")).toBe(true);
      // The amber ring (#f2a900) came out at 2.0:1 on the white page.
      expect(seen.filter((s) => s.ratio < 3)).toEqual([]);
    });
});
