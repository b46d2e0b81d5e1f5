import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import {
  type Contest,
  currentPhase,
  type Phase,
  type PhaseClosure,
  validateTimeline,
} from "@phaselock/policy";
import type { AppEnv } from "../context.ts";
import { audited, publishChange } from "../effects.ts";
import { fail } from "../errors.ts";
import { auth } from "../middleware/auth.ts";
import {
  bearer,
  Cursor,
  DisplayText,
  IsoDateTime,
  jsonBody,
  jsonContent,
  Limit,
  problems,
  Slug,
} from "../schemas.ts";

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
    // A union, not `.nullable()`: on a registered schema zod-to-openapi writes that as
    // `allOf: [Phase, {type: [object, null]}]`, which no null satisfies (Phase is an object).
    currentPhase: z.union([PhaseOutput, z.null()]).openapi({
      description: "the phase holding now, or null when closed",
    }),
  })
  .openapi("Contest");

const ContestList = z
  .object({ items: z.array(ContestOutput), nextCursor: z.string().nullable() })
  .openapi("ContestList");

const ContestListQuery = z.object({ limit: Limit, cursor: Cursor.optional() });

const ContestParams = z.object({
  contestId: Slug.openapi({ param: { name: "contestId", in: "path" }, example: "leadership-2020" }),
});

const PhaseParams = ContestParams.extend({
  phase: Slug.openapi({ param: { name: "phase", in: "path" }, example: "ballot" }),
});

const TimelineWarning = z
  .object({
    code: z.literal("phase_closed_early"),
    phase: z.string(),
    closedAt: IsoDateTime,
    message: z.string(),
  })
  .openapi("TimelineWarning", {
    description:
      "The timeline opens a phase that was ended early: its links issued up to `closedAt` stay dead; links issued from now on work.",
  });

const ContestReplaced = ContestOutput.extend({
  warnings: z
    .array(TimelineWarning)
    .optional()
    .openapi({ description: "present when the replacement re-opens a phase ended early" }),
}).openapi("ContestReplaced");

const PhaseEndInput = z.strictObject({ reason: DisplayText(500) }).openapi("PhaseEndInput");

const PhaseEnded = ContestOutput.extend({
  closure: z.object({ phase: z.string(), closedAt: IsoDateTime, reason: z.string() }),
}).openapi("PhaseEnded");

const TIMELINE_REASON = "timeline replaced";

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

const closureAudit = (closure: PhaseClosure, cause: "end" | "timeline", version: number) =>
  ({
    type: "phase.ended",
    data: {
      contestId: closure.contestId,
      phase: closure.phase,
      closedAt: closure.closedAt.toISOString(),
      reason: closure.reason,
      cause,
      version,
    },
  }) as const;

export function registerContests(app: OpenAPIHono<AppEnv>): void {
  app.openapi(
    createRoute({
      method: "put",
      path: "/v1/contests/{contestId}",
      tags: ["contests"],
      summary: "Create or replace a contest's timeline",
      description:
        "Phases are half-open windows [startsAt, endsAt) that never overlap. Replacing a timeline so that a phase that had not ended yet is over or gone ends that phase early: its links are dead at once and for good, even if a later timeline re-opens the window (such a timeline still applies and answers `warnings`). Re-opening a phase whose end has passed (say one cut short to an end that has since come) likewise leaves the links issued until that end dead.",
      security: bearer,
      middleware: [auth({ roles: ["admin"] })] as const,
      request: { params: ContestParams, body: jsonBody(ContestInput) },
      responses: {
        200: jsonContent(ContestReplaced, "The contest as stored"),
        ...problems(400, 401, 403, 413, 415),
      },
    }),
    async (c) => {
      const { deps, principal } = c.var;
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
      const now = deps.clock.now();
      const { version, contest, closed, reopened } = await audited(c, async ({ repos, record }) => {
        const replaced = await repos.contests.replaceTimeline(contestId, body.name, timeline.phases, {
          now,
          actor: principal.actor,
          reason: TIMELINE_REASON,
        });
        record({
          type: "contest.replaced",
          data: { contestId, phases: replaced.contest.phases.map(phaseJson), version: replaced.version },
        });
        for (const closure of replaced.closed) record(closureAudit(closure, "timeline", replaced.version));
        return replaced;
      });
      await publishChange(deps, version, { type: "contest", contest, closures: closed });
      const warnings = reopened.map((r) => ({
        code: "phase_closed_early" as const,
        phase: r.phase,
        closedAt: r.closedAt.toISOString(),
        message: `Phase "${r.phase}" was ended early at ${r.closedAt.toISOString()}: links issued until then stay dead; issue new ones.`,
      }));
      return c.json({ ...contestJson(contest, now), ...(warnings.length > 0 ? { warnings } : {}) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/contests/{contestId}/phases/{phase}/end",
      tags: ["contests"],
      summary: "Switch a phase off now",
      description:
        "The phase ends at this instant (its `endsAt` becomes now; for a phase not yet begun, its start: an empty window) and every link of it issued so far is refused `phase_closed` for good, even if a later timeline moves its end again. Links issued after a later re-opening work.",
      security: bearer,
      middleware: [auth({ roles: ["admin"] })] as const,
      request: { params: PhaseParams, body: jsonBody(PhaseEndInput) },
      responses: {
        200: jsonContent(PhaseEnded, "The contest as stored, with the closure"),
        ...problems(
          400,
          401,
          403,
          [404, "`not_found`: unknown contest or phase"],
          [409, "`phase_closed`: the phase has already ended"],
          413,
          415,
        ),
      },
    }),
    async (c) => {
      const { deps, principal } = c.var;
      const { contestId, phase } = c.req.valid("param");
      const { reason } = c.req.valid("json");
      const now = deps.clock.now();
      const result = await audited(c, async ({ repos, record }) => {
        const ended = await repos.contests.endPhase(contestId, phase, {
          now,
          actor: principal.actor,
          reason,
        });
        if (ended.ok) record(closureAudit(ended.closure, "end", ended.version));
        return ended;
      });
      if (!result.ok) {
        if (result.code === "not_found") fail("not_found", "No such contest or phase.");
        fail("phase_closed", "The phase has already ended.");
      }
      const { version, contest, closure } = result;
      await publishChange(deps, version, { type: "contest", contest, closures: [closure] });
      return c.json(
        {
          ...contestJson(contest, now),
          closure: { phase, closedAt: closure.closedAt.toISOString(), reason: closure.reason },
        },
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/contests",
      tags: ["contests"],
      summary: "List contests",
      description: "Every contest by id, with its timeline and the phase holding now.",
      security: bearer,
      middleware: [auth({ roles: ["admin", "coordinator", "auditor"] })] as const,
      request: { query: ContestListQuery },
      responses: {
        200: jsonContent(ContestList, "One page"),
        ...problems(400, 401),
      },
    }),
    async (c) => {
      const { deps } = c.var;
      const query = c.req.valid("query");
      const page = await deps.repos.contests.listPage({ limit: query.limit, cursor: query.cursor ?? null });
      const now = deps.clock.now();
      return c.json(
        { items: page.items.map((ct) => contestJson(ct, now)), nextCursor: page.nextCursor },
        200,
      );
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
