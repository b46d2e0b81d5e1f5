import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { describe, expect, it } from "vitest";
import type { AppEnv } from "./context.ts";
import { fail, onError, PROBLEM_CODES, PROBLEMS, type ProblemCode } from "./errors.ts";

function app() {
  const a = new Hono<AppEnv>();
  a.get("/fail/:code", (c) => fail(c.req.param("code") as ProblemCode, "detail"));
  a.get("/http/:status", (c) => {
    throw new HTTPException(Number(c.req.param("status")) as 400, { message: "hono" });
  });
  // As drizzle throws a driver's error: wrapped, the code on the cause.
  a.get("/db/:code", (c) => {
    const driver = Object.assign(new Error("from the database"), { code: c.req.param("code") });
    throw new Error("Failed query: select 1", { cause: driver });
  });
  a.onError(onError);
  return a;
}

describe("the problem table", () => {
  it.each(PROBLEM_CODES)("%s answers with the table's status and title", async (code) => {
    const res = await app().request(`/fail/${code}`);
    const body = (await res.json()) as { code: string; status: number; title: string };
    expect(res.status).toBe(PROBLEMS[code].status);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    expect(body).toMatchObject({ code, status: PROBLEMS[code].status, title: PROBLEMS[code].title });
  });

  it("answers issuance's phase_closed with 409, not the gateway's 403", () => {
    expect(PROBLEMS.phase_closed.status).toBe(409);
  });

  it.each([
    [400, "validation"],
    [401, "unauthorized"],
    [403, "forbidden"],
    [404, "not_found"],
    [406, "not_acceptable"],
    [413, "payload_too_large"],
    [415, "unsupported_media_type"],
    [418, "internal"],
  ])("a Hono %i exception answers %s", async (status, code) => {
    const res = await app().request(`/http/${status}`);
    expect(res.status).toBe(PROBLEMS[code as ProblemCode].status);
    expect(((await res.json()) as { code: string }).code).toBe(code);
  });
});

describe("a database that cannot be used right now", () => {
  it.each([
    ["3D000", "database does not exist (dropped under the service)"],
    ["08006", "connection failure"],
    ["08001", "cannot establish a connection"],
    ["57P01", "admin shutdown"],
    ["57P02", "crash shutdown"],
    ["57P03", "cannot connect now"],
    ["57P04", "database dropped"],
    ["57P05", "idle session timeout"],
    ["53300", "too many connections"],
    ["55000", "database not accepting connections (ALLOW_CONNECTIONS false)"],
    ["28000", "invalid authorization"],
    ["28P01", "invalid password"],
    ["ECONNREFUSED", "connection refused"],
    ["CONNECTION_CLOSED", "the connection closed"],
  ])("answers %s (%s) 503 unavailable, never 500", async (code) => {
    const res = await app().request(`/db/${code}`);
    expect(res.status).toBe(503);
    expect(((await res.json()) as { code: string }).code).toBe("unavailable");
  });

  it.each([
    ["23505", "unique violation"],
    ["42P01", "undefined table"],
    ["25006", "read-only transaction"],
    ["53100", "disk full"],
    ["3D", "not a SQLSTATE"],
  ])("answers %s (%s) 500 internal: a failure of this request, not of the database", async (code) => {
    const res = await app().request(`/db/${code}`);
    expect(res.status).toBe(500);
    expect(((await res.json()) as { code: string }).code).toBe("internal");
  });
});
