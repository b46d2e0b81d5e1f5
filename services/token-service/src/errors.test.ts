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
