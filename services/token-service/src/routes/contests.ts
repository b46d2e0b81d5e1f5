import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import { type Contest, currentPhase, type Phase, validateTimeline } from "@phaselock/policy";
import type { AppEnv } from "../context.ts";
import { audited, publishChange } from "../effects.ts";
import { fail } from "../errors.ts";
import { auth } from "../middleware/auth.ts";
import { bearer, DisplayText, IsoDateTime, jsonBody, jsonContent, problems, Slug } from "../schemas.ts";

const PhaseInput = z
  .strictObject({
    name: Slug,
    startsAt: IsoDateTime,
    endsAt: IsoDateTime,
    memberData: z.boolean(),
  })
  .openapi("PhaseInput");

const ContestInput = z
  .strictObject({
    name: DisplayText(200),
    phases: z.array(PhaseInput).min(1).max(100),
  })
  .openapi("ContestInput");

const PhaseOutput = z
  .object({ name: z.string(), startsAt: IsoDateTime, endsAt: IsoDateTime, memberData: z.boolean() })
  .openapi("Phase");

const ContestOutput = z
  .object({
    id: z.string(),
    name: z.string(),
    phases: z.array(PhaseOutput),
    currentPhase: PhaseOutput.nullable().openapi({
      description: "the phase holding now, or null when closed",
    }),
  })
  .openapi("Contest");

const ContestParams = z.object({
  contestId: Slug.openapi({ param: { name: "contestId", in: "path" }, example: "leadership-2020" }),
});

const phaseJson = (p: Phase) => ({
  name: p.name,
  startsAt: p.startsAt.toISOString(),
  endsAt: p.endsAt.toISOString(),
  memberData: p.memberData,
});

export const contestJson = (contest: Contest, now: Date) => {
  const current = currentPhase(contest, now);
  return {
    id: contest.id,
    name: contest.name,
    phases: contest.phases.map(phaseJson),
    currentPhase: current ? phaseJson(current) : null,
  };
};

export function registerContests(app: OpenAPIHono<AppEnv>): void {
  app.openapi(
    createRoute({
      method: "put",
      path: "/v1/contests/{contestId}",
      tags: ["contests"],
      summary: "Create or replace a contest's timeline",
      description:
        "Phases are half-open windows [startsAt, endsAt) that never overlap. Replacing a timeline so that a phase ends early ends that phase's links at once.",
      security: bearer,
      middleware: [auth({ roles: ["admin"] })] as const,
      request: { params: ContestParams, body: jsonBody(ContestInput) },
      responses: {
        200: jsonContent(ContestOutput, "The contest as stored"),
        ...problems(400, 401, 403, 413, 415),
      },
    }),
    async (c) => {
      const { deps } = c.var;
      const { contestId } = c.req.valid("param");
      const body = c.req.valid("json");
      const timeline = validateTimeline(
        body.phases.map((p) => ({
          name: p.name,
          startsAt: new Date(p.startsAt),
          endsAt: new Date(p.endsAt),
          memberData: p.memberData,
        })),
      );
      if (!timeline.ok) {
        fail("validation", `Invalid timeline: ${timeline.message}.`, {
          issues: [{ in: "body", pointer: "#/phases", detail: timeline.message }],
        });
      }
      const { version, contest } = await audited(c, async ({ repos, record }) => {
        const replaced = await repos.contests.replaceTimeline(contestId, body.name, timeline.phases);
        record({
          type: "contest.replaced",
          data: { contestId, phases: replaced.contest.phases.map(phaseJson), version: replaced.version },
        });
        return replaced;
      });
      await publishChange(deps, version, { type: "contest", contest });
      return c.json(contestJson(contest, deps.clock.now()), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/contests/{contestId}",
      tags: ["contests"],
      summary: "A contest with its timeline and current phase",
      security: bearer,
      middleware: [auth({ roles: ["admin", "coordinator", "auditor"] })] as const,
      request: { params: ContestParams },
      responses: {
        200: jsonContent(ContestOutput, "The contest"),
        ...problems(400, 401, 404),
      },
    }),
    async (c) => {
      const { deps } = c.var;
      const { contestId } = c.req.valid("param");
      const contest = await deps.repos.contests.get(contestId);
      if (!contest) fail("not_found", "No such contest.");
      return c.json(contestJson(contest, deps.clock.now()), 200);
    },
  );
}
