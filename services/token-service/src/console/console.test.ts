import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ADMIN,
  callJson,
  createHarness,
  createKey,
  type Harness,
  seedContest,
  seedOpen,
} from "../test-support.ts";
import { CONSOLE_CSP } from "./index.tsx";

let h: Harness;
beforeAll(async () => {
  h = await createHarness();
}, 60_000);
afterAll(() => h.close());

/** Every credential a test signed in with: no page may show one. */
const secrets = new Set<string>([ADMIN]);

interface Answer {
  status: number;
  html: string;
  res: Response;
}

/** A browser as the console sees one: keeps its cookie, sends forms from the console's origin. */
class Browser {
  cookie: string | undefined;
  csrf = "";

  async request(
    path: string,
    init: RequestInit & { headers?: Record<string, string> } = {},
  ): Promise<Answer> {
    const headers: Record<string, string> = { ...(init.headers ?? {}) };
    if (this.cookie) headers.cookie = `pl_console=${this.cookie}`;
    const res = await h.app.request(path, { ...init, headers });
    const set = res.headers.get("set-cookie");
    if (set?.startsWith("pl_console=")) {
      const value = set.slice("pl_console=".length).split(";")[0]!;
      this.cookie = value === "" || /max-age=0/i.test(set) ? undefined : value;
    }
    const html = await res.text();
    const type = res.headers.get("content-type") ?? "";
    if (type.startsWith("text/html")) {
      // Every console page: the CSP, nosniff, no cache, and no credential anywhere.
      expect(res.headers.get("content-security-policy")).toBe(CONSOLE_CSP);
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(res.headers.get("cache-control")).toBe("no-store");
      expect(res.headers.get("referrer-policy")).toBe("no-referrer");
      if (!path.startsWith("/console/api-keys") || init.method !== "POST")
        for (const s of secrets) expect(html).not.toContain(s);
      const token = /name="csrf" value="([^"]+)"/.exec(html)?.[1];
      if (token) this.csrf = token;
    }
    return { status: res.status, html, res };
  }

  get(path: string) {
    return this.request(path);
  }

  /** A form POST from a console page; `csrf: null` leaves the token out. */
  post(
    path: string,
    fields: Record<string, string | string[]> = {},
    opts: { csrf?: string | null; headers?: Record<string, string> } = {},
  ) {
    const body = new URLSearchParams();
    const csrf = opts.csrf === undefined ? this.csrf : opts.csrf;
    if (csrf !== null) body.set("csrf", csrf);
    for (const [k, v] of Object.entries(fields)) for (const x of [v].flat()) body.append(k, x);
    return this.request(path, {
      method: "POST",
      body: body.toString(),
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        origin: "http://localhost",
        "sec-fetch-site": "same-origin",
        ...(opts.headers ?? {}),
      },
    });
  }

  upload(path: string, fields: Record<string, string | string[]>, file: { name: string; text: string }) {
    const form = new FormData();
    form.set("csrf", this.csrf);
    for (const [k, v] of Object.entries(fields)) for (const x of [v].flat()) form.append(k, x);
    form.set("sheet", new File([file.text], file.name, { type: "text/csv" }));
    return this.request(path, {
      method: "POST",
      body: form,
      headers: { origin: "http://localhost", "sec-fetch-site": "same-origin" },
    });
  }

  async signIn(key: string): Promise<Answer> {
    secrets.add(key);
    await this.get("/console/sign-in");
    return this.post("/console/sign-in", { apiKey: key }, { csrf: null });
  }
}

async function signedIn(key: string): Promise<Browser> {
  const b = new Browser();
  const res = await b.signIn(key);
  expect(res.status).toBe(303);
  expect(b.cookie).toBeDefined();
  return b;
}

describe("console sign-in", () => {
  it("shows a field labelled API key and a Sign in button, under the strict CSP", async () => {
    const { status, html } = await new Browser().get("/console/sign-in");
    expect(status).toBe(200);
    expect(html).toMatch(/<label for="apiKey">API key<\/label>/);
    expect(html).toMatch(/<input type="password" id="apiKey" name="apiKey"/);
    expect(html).toMatch(/<button type="submit">Sign in<\/button>/);
    expect(html).not.toMatch(/<script>|<style>| style=| on[a-z]+=/);
  });

  it("signs in with the admin token into an HttpOnly, SameSite=Strict session cookie", async () => {
    const b = new Browser();
    await b.get("/console/sign-in");
    const res = await b.request("/console/sign-in", {
      method: "POST",
      body: new URLSearchParams({ apiKey: ADMIN }).toString(),
      headers: { "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "same-origin" },
    });
    expect(res.status).toBe(303);
    const cookie = res.res.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect(cookie).toMatch(/Path=\/console/);
    expect(cookie).not.toContain(ADMIN);
    expect(b.cookie).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const home = await b.get("/console");
    expect(home.status).toBe(303);
    expect(home.res.headers.get("location")).toBe("/console/links");
  });

  it("refuses a wrong key without echoing it, and sets no session", async () => {
    const b = new Browser();
    const res = await b.post("/console/sign-in", { apiKey: "plk_not-a-real-key-at-all" }, { csrf: null });
    expect(res.status).toBe(401);
    expect(res.html).toContain("That API key is not valid.");
    expect(res.html).not.toContain("plk_not-a-real-key-at-all");
    expect(b.cookie).toBeUndefined();
    expect((await b.get("/console/links")).res.headers.get("location")).toBe("/console/sign-in");
  });

  it("refuses a sign-in posted from another site", async () => {
    const b = new Browser();
    const res = await b.post(
      "/console/sign-in",
      { apiKey: ADMIN },
      { csrf: null, headers: { "sec-fetch-site": "cross-site" } },
    );
    expect(res.status).toBe(403);
    expect(b.cookie).toBeUndefined();
  });
});
