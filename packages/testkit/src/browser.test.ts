import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeBrowser, seriousAxeViolations } from "./browser.ts";

// A tiny page server: the browser helpers are checked on real HTTP pages with a strict CSP, as
// the services serve theirs.
let server: Server;
let base: string;
const PAGES: Record<string, string> = {
  "/good": `<!doctype html><html lang="en"><head><meta name="viewport" content="width=device-width, initial-scale=1"><title>Good</title></head><body><main><h1>Hello</h1><img src="data:," alt="nothing"><button>Go</button></main></body></html>`,
  "/bad": `<!doctype html><html lang="en"><head><title>Bad</title></head><body><main><h1>Hello</h1><img src="data:,"><button></button></main></body></html>`,
};
beforeAll(async () => {
  server = createServer((req, res) => {
    const page = PAGES[req.url ?? ""];
    res.writeHead(page ? 200 : 404, {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": "default-src 'none'; img-src data:; frame-ancestors 'none'",
    });
    res.end(page ?? "");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describeBrowser("testkit browser", (b) => {
  // Without a viewport meta tag a phone lays the page out 980 px wide; with it, at the phone's width.
  it("opens a phone-sized page and runs axe under a strict CSP", async () => {
    const page = await (await b.context("phone")).newPage();
    await page.goto(`${base}/good`);
    expect(await page.evaluate("window.innerWidth")).toBe(375);
    expect(await seriousAxeViolations(page)).toEqual([]);
  });

  it("reports serious and critical violations (an image without alt, a button without a name)", async () => {
    const page = await (await b.context()).newPage();
    await page.goto(`${base}/bad`);
    const ids = (await seriousAxeViolations(page)).map((v) => v.id).sort();
    expect(ids).toEqual(["button-name", "image-alt"]);
  });
});
