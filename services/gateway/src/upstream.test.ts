import { once } from "node:events";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { getRequestListener } from "@hono/node-server";
import { Hono } from "hono";
import { afterEach, describe, expect, it } from "vitest";
import {
  createHttpUpstream,
  createInProcessUpstream,
  type HttpUpstream,
  type Upstream,
  UpstreamError,
  type UpstreamRequest,
} from "./upstream.ts";

type Handler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A real HTTP server on 127.0.0.1, port 0, counting the TCP connections it accepts. */
async function startServer(handler: Handler) {
  const sockets = new Set<Socket>();
  const stats = { connections: 0, requests: 0 };
  const server = createServer((req, res) => {
    stats.requests++;
    void handler(req, res);
  });
  server.on("connection", (s: Socket) => {
    stats.connections++;
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  cleanups.push(async () => {
    for (const s of sockets) s.destroy();
    server.close();
    await once(server, "close");
  });
  return { url: `http://127.0.0.1:${port}`, port, stats };
}

function upstream(opts: Parameters<typeof createHttpUpstream>[0]): HttpUpstream {
  const u = createHttpUpstream(opts);
  cleanups.push(() => u.close());
  return u;
}

/** Echoes what it received as JSON. */
const echo: Handler = (req, res) => {
  const chunks: Buffer[] = [];
  req.on("data", (c: Buffer) => chunks.push(c));
  req.on("end", () => {
    res.setHeader("content-type", "application/json");
    res.end(
      JSON.stringify({
        method: req.method,
        url: req.url,
        headers: req.headers,
        body: Buffer.concat(chunks).toString("utf8"),
      }),
    );
  });
};

const streamOf = (...parts: string[]): ReadableStream<Uint8Array> =>
  new ReadableStream({
    start(controller) {
      for (const p of parts) controller.enqueue(new TextEncoder().encode(p));
      controller.close();
    },
  });

const get = (path: string, headers: Record<string, string> = {}): UpstreamRequest => ({
  method: "GET",
  path,
  headers: new Headers(headers),
  body: null,
});

async function rejection(p: Promise<unknown>): Promise<UpstreamError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(UpstreamError);
    return err as UpstreamError;
  }
  throw new Error("expected a rejection");
}

const defaults = { timeoutMs: 5_000, maxBodyBytes: 1024 };

describe("createHttpUpstream", () => {
  it("forwards method, path with query, headers and body, and relays the answer", async () => {
    const srv = await startServer(echo);
    const u = upstream({ baseUrl: srv.url, ...defaults });
    const res = await u.forward({
      method: "POST",
      path: "/calls/c_1/outcome?x=1",
      headers: new Headers({ "content-type": "application/json", "x-phaselock-campaign": "starmer-2020" }),
      body: streamOf('{"outcome":', '"answered"}'),
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    const seen = (await res.json()) as {
      method: string;
      url: string;
      headers: Record<string, string>;
      body: string;
    };
    expect(seen.method).toBe("POST");
    expect(seen.url).toBe("/calls/c_1/outcome?x=1");
    expect(seen.body).toBe('{"outcome":"answered"}');
    expect(seen.headers["x-phaselock-campaign"]).toBe("starmer-2020");
    expect(seen.headers["content-type"]).toBe("application/json");
    expect(seen.headers.host).toBe(`127.0.0.1:${srv.port}`);
  });

  it("prefixes the base URL's path", async () => {
    const srv = await startServer(echo);
    const u = upstream({ baseUrl: `${srv.url}/app/`, ...defaults });
    const seen = (await (await u.forward(get("/calls/next?a=b"))).json()) as { url: string };
    expect(seen.url).toBe("/app/calls/next?a=b");
  });

  it("removes hop-by-hop headers, credentials and Host from the request", async () => {
    const srv = await startServer(echo);
    const u = upstream({ baseUrl: srv.url, ...defaults });
    const res = await u.forward(
      get("/", {
        connection: "keep-alive, X-Hop-Secret",
        "x-hop-secret": "must not pass",
        "keep-alive": "timeout=5",
        "proxy-authorization": "Basic Zm9vOmJhcg==",
        "proxy-connection": "keep-alive",
        "proxy-anything": "x",
        te: "trailers",
        trailer: "x-checksum",
        upgrade: "websocket",
        "http2-settings": "AAMAAABkAAQAAP__",
        cookie: "pl_session=secret",
        authorization: "Bearer eyJhbGciOiJFZERTQSJ9.x.y",
        host: "evil.example",
        expect: "100-continue",
        "x-kept": "yes",
      }),
    );
    const { headers } = (await res.json()) as { headers: Record<string, string> };
    for (const gone of [
      "x-hop-secret",
      "keep-alive",
      "proxy-authorization",
      "proxy-connection",
      "proxy-anything",
      "te",
      "trailer",
      "upgrade",
      "http2-settings",
      "cookie",
      "authorization",
      "expect",
    ]) {
      expect(headers, gone).not.toHaveProperty(gone);
    }
    expect(headers["transfer-encoding"]).toBeUndefined();
    expect(headers.connection ?? "keep-alive").toBe("keep-alive");
    expect(headers.host).toBe(`127.0.0.1:${srv.port}`);
    expect(headers["x-kept"]).toBe("yes");
  });

  it("removes hop-by-hop headers from the response and keeps the rest, every Set-Cookie included", async () => {
    const srv = await startServer((_req, res) => {
      res.setHeader("connection", "X-Upstream-Hop");
      res.setHeader("x-upstream-hop", "internal");
      res.setHeader("keep-alive", "timeout=5");
      res.setHeader("proxy-authenticate", "Basic");
      res.setHeader("upgrade", "h2c");
      res.setHeader("trailer", "x-checksum");
      res.setHeader("set-cookie", ["a=1", "b=2"]);
      res.setHeader("x-custom", "kept");
      res.setHeader("content-type", "text/plain");
      res.end("hello");
    });
    const u = upstream({ baseUrl: srv.url, ...defaults });
    const res = await u.forward(get("/"));
    for (const gone of [
      "connection",
      "x-upstream-hop",
      "keep-alive",
      "proxy-authenticate",
      "upgrade",
      "trailer",
      "transfer-encoding",
    ]) {
      expect(res.headers.has(gone), gone).toBe(false);
    }
    expect(res.headers.get("x-custom")).toBe("kept");
    expect(res.headers.getSetCookie()).toEqual(["a=1", "b=2"]);
    expect(await res.text()).toBe("hello");
  });

  it("streams the response body rather than buffering it", async () => {
    let finish: () => void = () => {};
    const srv = await startServer((_req, res) => {
      res.write("first-");
      finish = () => res.end("last");
    });
    const u = upstream({ baseUrl: srv.url, ...defaults });
    const res = await u.forward(get("/members/export"));
    const reader = res.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toBe("first-");
    finish();
    let rest = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(rest).toBe("last");
  });

  it("answers HEAD and 204 with no body, and does not forward a GET body", async () => {
    const srv = await startServer((req, res) => {
      if (req.url === "/empty") {
        res.statusCode = 204;
        res.end();
        return;
      }
      echo(req, res);
    });
    const u = upstream({ baseUrl: srv.url, ...defaults });
    const head = await u.forward({ method: "HEAD", path: "/", headers: new Headers(), body: null });
    expect(head.status).toBe(200);
    expect(head.body).toBeNull();
    const empty = await u.forward(get("/empty"));
    expect(empty.status).toBe(204);
    expect(empty.body).toBeNull();
    const withBody = await u.forward({
      method: "GET",
      path: "/",
      headers: new Headers({ "content-length": "5" }),
      body: streamOf("hello"),
    });
    const seen = (await withBody.json()) as { body: string; headers: Record<string, string> };
    expect(seen.body).toBe("");
    expect(seen.headers["content-length"]).toBeUndefined();
  });

  describe("request body limit", () => {
    it("passes a body of exactly maxBodyBytes", async () => {
      const srv = await startServer(echo);
      const u = upstream({ baseUrl: srv.url, timeoutMs: 5_000, maxBodyBytes: 10 });
      const res = await u.forward({
        method: "POST",
        path: "/",
        headers: new Headers(),
        body: streamOf("12345", "67890"),
      });
      expect(((await res.json()) as { body: string }).body).toBe("1234567890");
    });

    it("refuses a declared Content-Length over the limit without contacting the upstream", async () => {
      const srv = await startServer(echo);
      const u = upstream({ baseUrl: srv.url, timeoutMs: 5_000, maxBodyBytes: 10 });
      const err = await rejection(
        u.forward({
          method: "POST",
          path: "/",
          headers: new Headers({ "content-length": "11" }),
          body: streamOf("12345678901"),
        }),
      );
      expect(err.code).toBe("body_too_large");
      expect(err.status).toBe(413);
      expect(srv.stats.connections).toBe(0);
    });

    it("counts a streamed body and stops it past the limit", async () => {
      let received = 0;
      const srv = await startServer((req, res) => {
        req.on("data", (c: Buffer) => {
          received += c.length;
        });
        req.on("error", () => {});
        req.on("end", () => res.end("ok"));
      });
      const u = upstream({ baseUrl: srv.url, timeoutMs: 5_000, maxBodyBytes: 10 });
      const err = await rejection(
        u.forward({
          method: "POST",
          path: "/",
          headers: new Headers(),
          body: streamOf("12345", "67890", "X"),
        }),
      );
      expect(err.code).toBe("body_too_large");
      expect(received).toBeLessThanOrEqual(10);

      // The pool is still usable afterwards.
      const ok = await u.forward({
        method: "POST",
        path: "/",
        headers: new Headers(),
        body: streamOf("fine"),
      });
      expect(await ok.text()).toBe("ok");
    });
  });

  describe("failures", () => {
    it("maps an upstream that never answers to upstream_timeout, and the pool recovers", async () => {
      const srv = await startServer((req, res) => {
        if (req.url === "/hang") return; // never answers
        res.end("ok");
      });
      // Small enough to keep the test quick, large enough that the healthy request after it
      // never misses the deadline on a loaded machine.
      const u = upstream({ baseUrl: srv.url, timeoutMs: 250, maxBodyBytes: 1024, connections: 1 });
      const [a, b] = await Promise.all([
        rejection(u.forward(get("/hang"))),
        rejection(u.forward(get("/hang"))),
      ]);
      for (const err of [a, b]) {
        expect(err.code).toBe("upstream_timeout");
        expect(err.status).toBe(504);
      }
      const ok = await u.forward(get("/"));
      expect(await ok.text()).toBe("ok");
    });

    it("maps a refused connection to upstream_unreachable", async () => {
      const srv = await startServer(echo);
      const port = srv.port;
      for (const c of cleanups.splice(0)) await c(); // close it: nothing listens on `port` now
      const u = upstream({ baseUrl: `http://127.0.0.1:${port}`, ...defaults });
      const err = await rejection(u.forward(get("/")));
      expect(err.code).toBe("upstream_unreachable");
      expect(err.status).toBe(502);
    });

    it("maps a connection dropped mid-request to upstream_unreachable", async () => {
      const srv = await startServer((req) => {
        req.socket.destroy();
      });
      const u = upstream({ baseUrl: srv.url, ...defaults });
      const err = await rejection(u.forward(get("/")));
      expect(err.code).toBe("upstream_unreachable");
    });

    it("maps a status a Response cannot carry to upstream_bad_response", async () => {
      const srv = await startServer((_req, res) => {
        res.writeHead(600);
        res.end("odd");
      });
      const u = upstream({ baseUrl: srv.url, ...defaults });
      const err = await rejection(u.forward(get("/")));
      expect(err.code).toBe("upstream_bad_response");
      expect(err.status).toBe(502);
    });

    it("refuses a method or path the caller should never produce, before it reaches the pool", async () => {
      const srv = await startServer(echo);
      const u = upstream({ baseUrl: srv.url, ...defaults, connections: 1 });
      for (const bad of [
        { ...get("/a b") },
        { ...get("relative") },
        { ...get("/x\r\nx-evil: 1") },
        { ...get("/"), method: "G T" },
        { ...get("/"), method: "CONNECT" },
      ]) {
        await expect(u.forward(bad)).rejects.toBeInstanceOf(TypeError);
      }
      // undici 7 can leave a pool slot busy after rejecting arguments; ours never gets there.
      const ok = await u.forward(get("/"));
      expect(ok.status).toBe(200);
      await ok.arrayBuffer();
    });

    it("a header undici would reject never reaches the pool: 64 of them leave every slot free", async () => {
      const srv = await startServer((_req, res) => {
        res.end("ok");
      });
      const u = upstream({ ...defaults, baseUrl: srv.url, timeoutMs: 2_000, connections: 2 });
      const bad = { method: "GET", path: "/", body: null, contentLength: null };
      for (let i = 0; i < 64; i++) {
        await expect(u.request!({ ...bad, headers: ["x-phaselock-volunteer", "Łukasz-1"] })).rejects.toThrow(
          TypeError,
        );
        await expect(u.request!({ ...bad, headers: ["bad name", "x"] })).rejects.toThrow(TypeError);
      }
      expect(srv.stats.requests).toBe(0);
      const answers = await Promise.all(Array.from({ length: 8 }, () => u.forward(get("/"))));
      expect(await Promise.all(answers.map((r) => r.text()))).toEqual(Array(8).fill("ok"));
    });

    it("refuses bad options", () => {
      expect(() => createHttpUpstream({ baseUrl: "ftp://x", ...defaults })).toThrow(RangeError);
      expect(() => createHttpUpstream({ baseUrl: "http://x/?q=1", ...defaults })).toThrow(RangeError);
      expect(() => createHttpUpstream({ baseUrl: "http://x", timeoutMs: 0, maxBodyBytes: 1 })).toThrow(
        RangeError,
      );
    });
  });

  describe("keep-alive", () => {
    it("reuses connections for sequential requests", async () => {
      const srv = await startServer(echo);
      const u = upstream({ baseUrl: srv.url, ...defaults, connections: 2 });
      for (let i = 0; i < 20; i++) {
        const res = await u.forward(get(`/calls/next?i=${i}`));
        await res.arrayBuffer();
      }
      expect(srv.stats.requests).toBe(20);
      expect(srv.stats.connections).toBeLessThanOrEqual(2);
    });

    it("opens at most `connections` connections for concurrent requests", async () => {
      const srv = await startServer(echo);
      const u = upstream({ baseUrl: srv.url, ...defaults, connections: 3 });
      await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          const res = await u.forward(get(`/calls/next?i=${i}`));
          await res.arrayBuffer();
        }),
      );
      expect(srv.stats.requests).toBe(20);
      expect(srv.stats.connections).toBeLessThanOrEqual(3);
    });
  });
});

/** One app, served in process or over HTTP, for the contract both upstreams must meet. */
function contractApp() {
  const app = new Hono();
  // A request body cut off by the body limit makes `c.req.text()` throw here; that is expected.
  app.onError((_err, c) => c.text("aborted", 500));
  app.all("*", async (c) => {
    const body = c.req.method === "GET" || c.req.method === "HEAD" ? "" : await c.req.text();
    c.header("connection", "x-app-hop");
    c.header("x-app-hop", "1");
    c.header("keep-alive", "timeout=5");
    c.header("x-kept", "1");
    c.header("set-cookie", "a=1", { append: true });
    c.header("set-cookie", "b=2", { append: true });
    const url = new URL(c.req.url);
    return c.json({
      method: c.req.method,
      url: url.pathname + url.search,
      headers: Object.fromEntries(c.req.raw.headers),
      body,
    });
  });
  return app;
}

const kinds: [string, (maxBodyBytes: number) => Promise<Upstream>][] = [
  ["in-process", async (maxBodyBytes) => createInProcessUpstream(contractApp(), { maxBodyBytes })],
  [
    "http",
    async (maxBodyBytes) => {
      const srv = await startServer(getRequestListener(contractApp().fetch));
      return upstream({ baseUrl: srv.url, timeoutMs: 5_000, maxBodyBytes });
    },
  ],
];

describe.each(kinds)("Upstream contract: %s", (_kind, make) => {
  type Echo = { method: string; url: string; headers: Record<string, string>; body: string };

  it("forwards method, path, query and body", async () => {
    const u = await make(1024);
    const res = await u.forward({
      method: "POST",
      path: "/calls/c_1/outcome?x=1",
      headers: new Headers({ "content-type": "application/json" }),
      body: streamOf('{"outcome":"answered"}'),
    });
    expect(res.status).toBe(200);
    const seen = (await res.json()) as Echo;
    expect(seen).toMatchObject({
      method: "POST",
      url: "/calls/c_1/outcome?x=1",
      body: '{"outcome":"answered"}',
    });
  });

  it("never forwards credentials or hop-by-hop request headers", async () => {
    const u = await make(1024);
    const res = await u.forward(
      get("/", {
        cookie: "pl_session=secret",
        authorization: "Bearer t",
        "proxy-authorization": "Basic x",
        connection: "x-hop",
        "x-hop": "1",
        te: "trailers",
        upgrade: "websocket",
        "x-phaselock-campaign": "c1",
      }),
    );
    const { headers } = (await res.json()) as Echo;
    for (const gone of ["cookie", "authorization", "proxy-authorization", "x-hop", "te", "upgrade"]) {
      expect(headers, gone).not.toHaveProperty(gone);
    }
    expect(headers["x-phaselock-campaign"]).toBe("c1");
  });

  it("drops hop-by-hop response headers and keeps the others", async () => {
    const u = await make(1024);
    const res = await u.forward(get("/"));
    expect(res.headers.has("x-app-hop")).toBe(false);
    expect(res.headers.has("connection")).toBe(false);
    expect(res.headers.has("keep-alive")).toBe(false);
    expect(res.headers.get("x-kept")).toBe("1");
    expect(res.headers.getSetCookie()).toEqual(["a=1", "b=2"]);
    await res.arrayBuffer();
  });

  it("forwards a body up to the limit and refuses one over it", async () => {
    const u = await make(5);
    const ok = await u.forward({
      method: "POST",
      path: "/",
      headers: new Headers(),
      body: streamOf("ab", "cde"),
    });
    expect(((await ok.json()) as Echo).body).toBe("abcde");
    const err = await rejection(
      u.forward({ method: "POST", path: "/", headers: new Headers(), body: streamOf("abc", "def") }),
    );
    expect(err.code).toBe("body_too_large");
  });
});

describe("createInProcessUpstream", () => {
  it("answers HEAD without a body", async () => {
    const u = createInProcessUpstream(contractApp());
    const res = await u.forward({ method: "HEAD", path: "/", headers: new Headers(), body: null });
    expect(res.status).toBe(200);
    expect(res.body).toBeNull();
  });

  it("maps an exception from the app to upstream_unreachable", async () => {
    const u = createInProcessUpstream({
      request: () => {
        throw new Error("boom");
      },
    });
    const err = await rejection(u.forward(get("/")));
    expect(err.code).toBe("upstream_unreachable");
  });
});
