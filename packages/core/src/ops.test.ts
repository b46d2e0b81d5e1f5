import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { Writable } from "node:stream";
import { Counter } from "prom-client";
import { describe, expect, it } from "vitest";
import { createLogger, errorText } from "./logger.ts";
import { createMetricsRegistry, HotCounter, HotHistogram, metricsAnswer, statusClass } from "./metrics.ts";
import { DEFAULT_PAGE_CSP, HSTS, missingSecurityHeaders } from "./security-headers.ts";
import { drain, installShutdown } from "./shutdown.ts";

describe("metricsAnswer", () => {
  const registry = createMetricsRegistry("test");
  new Counter({ name: "phaselock_test_total", help: "a test counter", registers: [registry] }).inc(3);

  it("answers Prometheus text when no METRICS_TOKEN is set", async () => {
    const out = await metricsAnswer(registry, undefined, undefined, "req_1");
    expect(out.status).toBe(200);
    expect(out.headers["content-type"]).toMatch(/^text\/plain/);
    expect(out.body).toContain("phaselock_test_total 3");
  });

  it.each([
    ["no credential", undefined],
    ["a wrong bearer", "Bearer wrong-token-wrong-token"],
    ["the token without the Bearer scheme", "metrics-token-0123456789"],
    ["a longer token with the right prefix", "Bearer metrics-token-0123456789x"],
  ])("refuses %s with a 401 problem when METRICS_TOKEN is set", async (_what, authorization) => {
    const out = await metricsAnswer(registry, authorization, "metrics-token-0123456789", "req_2");
    expect(out.status).toBe(401);
    expect(out.headers["content-type"]).toBe("application/problem+json");
    const body = JSON.parse(out.body) as { code: string; requestId: string };
    expect(body.code).toBe("unauthorized");
    expect(body.requestId).toBe("req_2");
    expect(out.body).not.toContain("phaselock_test_total");
    expect(out.body).not.toContain("metrics-token");
  });

  it("answers the right bearer (scheme in any case)", async () => {
    const out = await metricsAnswer(
      registry,
      "bearer metrics-token-0123456789",
      "metrics-token-0123456789",
      "r",
    );
    expect(out.status).toBe(200);
  });

  it("labels the process metrics with the service, and nothing else with it", async () => {
    // The contract names `phaselock_gateway_decisions_total{decision,code}`: a service's own series
    // carry their own labels only; the process metrics, alike in every service, say whose they are.
    const withProcess = createMetricsRegistry("gateway", { process: true });
    new Counter({ name: "phaselock_own_total", help: "own", labelNames: ["code"], registers: [withProcess] })
      .labels("ok")
      .inc();
    const text = await withProcess.metrics();
    expect(text).toMatch(/^phaselock_process_cpu_seconds_total\{service="gateway"\} /m);
    expect(text).toContain('phaselock_own_total{code="ok"} 1');
  });

  it("keeps each registry apart (no module-level default)", async () => {
    const other = createMetricsRegistry("other");
    expect(await other.metrics()).not.toContain("phaselock_test_total");
  });

  it("classes statuses", () => {
    expect([101, 200, 303, 404, 503, 999].map(statusClass)).toEqual([
      "1xx",
      "2xx",
      "3xx",
      "4xx",
      "5xx",
      "5xx",
    ]);
  });
});

describe("hot-path metrics", () => {
  it("expose bound children as Prometheus counters and cumulative histograms", async () => {
    const registry = createMetricsRegistry("t");
    const counter = new HotCounter("phaselock_hot_total", "c", ["decision", "code"], registry);
    const ok = counter.child("allow", "ok");
    counter.child("deny", "expired");
    ok.inc();
    ok.inc(2);
    const histogram = new HotHistogram("phaselock_hot_seconds", "h", ["route"], [0.01, 0.1, 1], registry);
    const proxy = histogram.child("proxy");
    for (const v of [0.005, 0.01, 0.05, 2]) proxy.observe(v);
    const text = await registry.metrics();
    expect(text).toContain('phaselock_hot_total{decision="allow",code="ok"} 3');
    expect(text).toContain('phaselock_hot_total{decision="deny",code="expired"} 0');
    expect(text).toContain("# TYPE phaselock_hot_seconds histogram");
    for (const [le, n] of [
      ["0.01", 2],
      ["0.1", 3],
      ["1", 3],
      ["+Inf", 4],
    ] as const) {
      expect(text).toContain(`phaselock_hot_seconds_bucket{route="proxy",le="${le}"} ${n}`);
    }
    expect(text).toContain('phaselock_hot_seconds_sum{route="proxy"} 2.065');
    expect(text).toContain('phaselock_hot_seconds_count{route="proxy"} 4');
    registry.resetMetrics();
    expect(await registry.metrics()).toContain('phaselock_hot_total{decision="allow",code="ok"} 0');
  });
});

describe("missingSecurityHeaders", () => {
  const from = (h: Record<string, string>) => (name: string) => h[name] ?? null;
  it("gives an HTML page without a CSP the default one, nosniff and a referrer policy", () => {
    const out = Object.fromEntries(
      missingSecurityHeaders(from({ "content-type": "text/html; charset=UTF-8" }), false),
    );
    expect(out["Content-Security-Policy"]).toBe(DEFAULT_PAGE_CSP);
    expect(out["Content-Security-Policy"]).toContain("frame-ancestors 'none'");
    expect(out["X-Content-Type-Options"]).toBe("nosniff");
    expect(out["Referrer-Policy"]).toBe("no-referrer");
    expect(out["Strict-Transport-Security"]).toBeUndefined();
  });

  it("completes a page's own CSP that allows framing", () => {
    const out = Object.fromEntries(
      missingSecurityHeaders(
        from({
          "content-type": "text/html",
          "content-security-policy": "default-src 'none'; frame-ancestors *",
        }),
        false,
      ),
    );
    expect(out["Content-Security-Policy"]).toBe("default-src 'none'; frame-ancestors 'none'");
  });

  it("keeps a page's CSP that already forbids framing", () => {
    const csp = "default-src 'none'; frame-ancestors 'none'";
    const out = missingSecurityHeaders(
      from({ "content-type": "text/html", "content-security-policy": csp }),
      false,
    );
    expect(out.map(([n]) => n)).not.toContain("Content-Security-Policy");
  });

  it("sends nosniff on JSON, HSTS only behind HTTPS, and no CSP on JSON", () => {
    const json = from({ "content-type": "application/json" });
    expect(missingSecurityHeaders(json, false)).toEqual([["X-Content-Type-Options", "nosniff"]]);
    expect(missingSecurityHeaders(json, true)).toEqual([
      ["X-Content-Type-Options", "nosniff"],
      ["Strict-Transport-Security", HSTS],
    ]);
  });
});

describe("createLogger", () => {
  it("writes JSON lines with every credential path redacted", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(...String(chunk).split("\n").filter(Boolean));
        done();
      },
    });
    const log = createLogger({ service: "t", destination: sink });
    log.info(
      {
        authorization: "Bearer s3cret-a",
        cookie: "pl_session=s3cret-b",
        headers: { "set-cookie": "s3cret-c", "x-api-key": "s3cret-d", authorization: "s3cret-e" },
        token: "s3cret-f",
        err: { session: "s3cret-g", key: "s3cret-h" },
        req: { headers: { cookie: "s3cret-i" } },
        apiKey: "s3cret-j",
        path: "/pb/calls/next",
      },
      "request",
    );
    log.flush();
    expect(lines).toHaveLength(1);
    const line = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(line).toMatchObject({ level: "info", service: "t", msg: "request", path: "/pb/calls/next" });
    expect(lines[0]).not.toMatch(/s3cret/);
  });

  it("honours the level", () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const log = createLogger({ service: "t", level: "warn", destination: sink });
    log.info("hidden");
    log.warn("shown");
    expect(lines.join("")).not.toContain("hidden");
    expect(lines.join("")).toContain("shown");
  });
});

describe("drain", () => {
  it("lets an in-flight request finish, refuses new connections, then resolves", async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => {
      release = r;
    });
    let arrived!: () => void;
    const inFlight = new Promise<void>((r) => {
      arrived = r;
    });
    const server = createServer((_req, res) => {
      arrived();
      void held.then(() => res.end("done"));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as AddressInfo;
    const answer = new Promise<string>((resolve, reject) => {
      request({ port, host: "127.0.0.1", path: "/" }, (res) => {
        let body = "";
        res.on("data", (c) => {
          body += c;
        });
        res.on("end", () => resolve(body));
      })
        .on("error", reject)
        .end();
    });
    await inFlight;
    let drained = false;
    const draining = drain([server], 10_000).then(() => {
      drained = true;
    });
    const refused = await new Promise<string>((resolve) => {
      request({ port, host: "127.0.0.1", path: "/" }, () => resolve("answered"))
        .on("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? "error"))
        .end();
    });
    expect(refused).toBe("ECONNREFUSED");
    expect(drained).toBe(false);
    release();
    expect(await answer).toBe("done");
    await draining;
    expect(drained).toBe(true);
  });
});

describe("drain of a large answer", () => {
  it("cuts no answer still being written to a slow reader (its response ended, its bytes not yet sent)", async () => {
    const size = 32 * 1024 * 1024;
    let arrived!: () => void;
    const inFlight = new Promise<void>((r) => {
      arrived = r;
    });
    const server = createServer((_req, res) => {
      arrived();
      setTimeout(() => res.end(Buffer.alloc(size, 120)), 50);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const { port } = server.address() as AddressInfo;
    const received = new Promise<number>((resolve) => {
      request({ port, host: "127.0.0.1", path: "/" }, (res) => {
        let n = 0;
        // A reader slower than the drain's checks: nothing read for 400 ms, then all of it.
        res.pause();
        setTimeout(() => res.resume(), 400);
        res.on("data", (c: Buffer) => {
          n += c.length;
        });
        res.on("end", () => resolve(n));
        res.on("error", () => resolve(n));
        res.on("aborted", () => resolve(n));
      })
        .on("error", () => resolve(-1))
        .end();
    });
    await inFlight;
    await drain([server], 10_000);
    expect(await received).toBe(size);
  });
});

describe("errorText", () => {
  it("drops a failed query's parameters (a secret being inserted) and keeps its cause", () => {
    const cause = new Error("permission denied for table gateway_secrets");
    const err = Object.assign(
      new Error(
        'Failed query: insert into "gateway_secrets" ("name", "value") values ($1, $2)\nparams: device-id,s3cr3t-device-key',
      ),
      { cause },
    );
    const text = errorText(err);
    expect(text).not.toContain("s3cr3t-device-key");
    expect(text).toContain('insert into "gateway_secrets"');
    expect(text).toContain("permission denied for table gateway_secrets");
  });

  it("drops the password of a URL in a message, and bounds the length", () => {
    const text = errorText(
      new Error("cannot connect to redis://default:hunter2-long-password@10.0.0.5:6379/0"),
    );
    expect(text).not.toContain("hunter2");
    expect(text).toContain("10.0.0.5:6379");
    expect(errorText(new Error("x".repeat(10_000))).length).toBeLessThanOrEqual(1_100);
    expect(errorText("plain")).toBe("plain");
  });
});

describe("installShutdown", () => {
  const started = () => {
    let t = 0;
    const exits: number[] = [];
    let release!: () => void;
    const closing = new Promise<void>((r) => {
      release = r;
    });
    const stop = installShutdown({
      name: "test",
      servers: [],
      close: () => closing,
      log: () => {},
      exit: (code) => void exits.push(code),
      now: () => t,
    });
    const at = (ms: number) => {
      t = ms;
    };
    return { stop, exits, release, at };
  };

  it("takes the same signal relayed again at once (pnpm's wrappers pass it on twice) as the first", async () => {
    const s = started();
    const first = s.stop("SIGTERM");
    s.at(5);
    await s.stop("SIGTERM");
    s.at(900);
    await s.stop("SIGTERM");
    expect(s.exits).toEqual([]);
    s.release();
    await first;
    expect(s.exits).toEqual([0]);
  });

  it("exits at once, 130, on a second signal: another one, or the same one a second later", async () => {
    const a = started();
    void a.stop("SIGTERM");
    await a.stop("SIGINT");
    expect(a.exits).toEqual([130]);
    const b = started();
    void b.stop("SIGINT");
    b.at(1_000);
    await b.stop("SIGINT");
    expect(b.exits).toEqual([130]);
    a.release();
    b.release();
  });
});
