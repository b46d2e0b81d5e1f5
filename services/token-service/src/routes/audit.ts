import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";
import {
  exportEvents,
  listEvents,
  ProofRangeError,
  type StoredEvent,
  storedConsistencyProof,
  storedInclusionProof,
  toBase64,
  verifyStored,
} from "@phaselock/audit";
import { stream } from "hono/streaming";
import type { AppEnv } from "../context.ts";
import { fail, failUnknownFilter } from "../errors.ts";
import { auth } from "../middleware/auth.ts";
import { bearer, Cursor, IsoDateTime, jsonContent, Limit, problems, Since, Slug } from "../schemas.ts";

const AuditEvent = z
  .object({
    seq: z.number().int(),
    id: z.string(),
    at: IsoDateTime,
    type: z.string().openapi({ example: "link.issued" }),
    actor: z.string().nullable(),
    campaignId: z.string().nullable(),
    linkId: z.string().nullable(),
    decision: z.enum(["allow", "deny"]).nullable(),
    reason: z.string().nullable(),
    data: z.record(z.string(), z.unknown()),
    prevHash: z.string(),
    hash: z.string(),
  })
  .openapi("AuditEvent");

const AuditQuery = z.object({
  campaignId: Slug.optional(),
  linkId: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,100}$/, "not a link id")
    .optional(),
  decision: z.enum(["allow", "deny"]).optional(),
  since: Since.optional(),
  limit: Limit,
  cursor: Cursor.optional(),
});

const Verified = z
  .union([
    z.object({ ok: z.literal(true), events: z.number().int(), head: z.string() }),
    z.object({
      ok: z.literal(false),
      events: z.number().int(),
      brokenAt: z.object({
        seq: z.number().int(),
        id: z.string(),
        reason: z.enum(["hash_mismatch", "prev_mismatch", "seq_gap", "checkpoint_mismatch"]),
      }),
    }),
  ])
  .openapi("AuditVerification");

/** A tree size or leaf index: decimal, no sign, no leading zeros, within 2^53. */
const TreeNumber = z
  .string()
  .regex(/^(0|[1-9][0-9]{0,15})$/, "a non-negative decimal integer")
  .transform(Number)
  .refine(Number.isSafeInteger, "too large");

const ProofQuery = z
  .object({
    from: TreeNumber.optional(),
    to: TreeNumber.optional(),
    index: TreeNumber.optional(),
    size: TreeNumber.optional(),
  })
  .strict()
  .refine(
    (q) =>
      (q.from !== undefined && q.to !== undefined && q.index === undefined && q.size === undefined) ||
      (q.index !== undefined && q.size !== undefined && q.from === undefined && q.to === undefined),
    "give either from and to (consistency) or index and size (inclusion)",
  );

const Proof = z
  .object({ proof: z.array(z.string().openapi({ example: "ziLRPtG+tiAcYjOlAuvTqDZew0Jr5NR3a/hKksWdbzs=" })) })
  .openapi("AuditProof");

const textContent = (description: string) => ({
  content: { "text/plain": { schema: z.string() } },
  description,
});

const eventJson = (e: StoredEvent) => ({ ...e, at: e.at.toISOString() });

const readers = auth({ roles: ["admin", "auditor"] });

export function registerAudit(app: OpenAPIHono<AppEnv>): void {
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/audit",
      tags: ["audit"],
      summary: "Access and admin events, newest first",
      security: bearer,
      middleware: [readers] as const,
      request: { query: AuditQuery },
      responses: {
        200: jsonContent(
          z
            .object({ items: z.array(AuditEvent), nextCursor: z.string().nullable() })
            .openapi("AuditEventList"),
          "One page",
        ),
        ...problems(400, 401, 403),
      },
    }),
    async (c) => {
      const q = c.req.valid("query");
      if (q.campaignId !== undefined && !(await c.var.deps.repos.campaigns.get(q.campaignId))) {
        failUnknownFilter("campaignId", "campaign");
      }
      const page = await listEvents(c.var.deps.db, {
        campaignId: q.campaignId,
        linkId: q.linkId,
        decision: q.decision,
        since: q.since ? new Date(q.since) : undefined,
        limit: q.limit,
        cursor: q.cursor,
      });
      return c.json({ items: page.items.map(eventJson), nextCursor: page.nextCursor }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/audit/verify",
      tags: ["audit"],
      summary: "Check the whole hash chain",
      description:
        "`events` is the number of events checked; `head` the latest hash, or `brokenAt` the first event that does not chain. A chain shorter than the newest checkpoint this log signed is broken too: `brokenAt` is then the first missing seq, `seq_gap`, with an empty `id` (its newest events were removed). So is a log whose events no longer give the root of a checkpoint this log signed (rewritten, chain and leaf hashes recomputed): `checkpoint_mismatch` at the first event no earlier checkpoint vouches for.",
      security: bearer,
      middleware: [readers] as const,
      responses: { 200: jsonContent(Verified, "The verification result"), ...problems(401, 403) },
    }),
    async (c) =>
      c.json(
        await verifyStored(c.var.deps.db, {
          verifierKey: c.var.deps.auditTrail.verifierKey(),
          held: await c.var.deps.auditTrail.heldCheckpoints(),
        }),
        200,
      ),
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/audit/export",
      tags: ["audit"],
      summary: "The audit chain as NDJSON, streamed",
      description:
        "The same file as `pnpm audit:export`: a header line, one line per event oldest first (from the first event at or after `since`, default the genesis), and a trailer with the count and head hash. Its end is fixed when the request starts. An export cut short has no trailer, so `pnpm audit:verify-export` reports it truncated.",
      security: bearer,
      middleware: [readers] as const,
      request: { query: z.object({ since: Since.optional() }).strict() },
      responses: {
        200: {
          content: {
            "application/x-ndjson": {
              schema: z.string().openapi({
                example:
                  '{"type":"phaselock.audit.export","version":1,"from_seq":1,"prev_hash":"0000…"}\n{"seq":1,"id":"evt_…","type":"contest.updated",…}\n{"type":"phaselock.audit.export.end","events":1,"head":"9f86…"}\n',
              }),
            },
          },
          description: "The export",
        },
        ...problems(400, 401, 403),
      },
    }),
    async (c) => {
      const { since } = c.req.valid("query");
      const db = c.var.deps.db;
      // The header line needs the database (the export's end and start): it is read before the
      // answer is sent, so a database that cannot be reached answers 503 unavailable, as every
      // other route does, not a 200 whose body is empty. Lines wait until the stream is open.
      let toStream: ((line: string) => Promise<void>) | undefined;
      let open!: () => void;
      const opened = new Promise<void>((resolve) => {
        open = resolve;
      });
      let headerRead!: () => void;
      const header = new Promise<void>((resolve) => {
        headerRead = resolve;
      });
      const run = exportEvents(db, {
        since: since ? new Date(since) : undefined,
        batchSize: 1_000,
        verifierKey: c.var.deps.auditTrail.verifierKey(),
        write: async (line) => {
          if (toStream === undefined) {
            headerRead();
            await opened;
          }
          await toStream?.(line);
        },
      });
      run.catch(() => {}); // awaited below, and in the stream once it is open
      await Promise.race([header, run]);
      c.header("Content-Type", "application/x-ndjson; charset=utf-8");
      c.header("Content-Disposition", 'attachment; filename="audit-export.ndjson"');
      c.header("Cache-Control", "no-store");
      return stream(
        c,
        async (s) => {
          toStream = (line) => s.write(`${line}\n`).then(() => {});
          open();
          await run;
        },
        async (err) => {
          // The trailer is never written, so the file reads as truncated, never as complete.
          c.var.deps.logger?.error("audit export failed", {
            error: err instanceof Error ? err.message : String(err),
          });
        },
      ) as never;
    },
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/audit/checkpoint",
      tags: ["audit"],
      summary: "The latest signed checkpoint of the audit log",
      description:
        "A C2SP tlog-checkpoint (origin, tree size, base64 RFC 9162 root) in a C2SP signed note, signed with the key at `/.well-known/audit-key`. A checkpoint is signed first when the log has grown since the latest.",
      security: bearer,
      middleware: [readers] as const,
      responses: {
        200: textContent("The signed note"),
        ...problems(
          401,
          403,
          [404, "`not_found`: the log is still empty"],
          [
            503,
            "`unavailable`: the database is unreachable, the checkpoint folder cannot be written, or the log no longer matches the checkpoints it signed",
          ],
        ),
      },
    }),
    async (c) => {
      const cp = await c.var.deps.auditTrail.checkpoint();
      if (!cp) fail("not_found", "The audit log has no events yet.");
      c.header("Cache-Control", "no-store");
      return c.text(cp.note, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/audit/proof",
      tags: ["audit"],
      summary: "A consistency or inclusion proof of the audit tree",
      description:
        "`from` and `to`: the RFC 9162 consistency proof between those tree sizes. `index` and `size`: the inclusion proof of the event with `seq = index + 1` in the tree of `size` events. Hashes are base64, leaf side first.",
      security: bearer,
      middleware: [readers] as const,
      request: { query: ProofQuery },
      responses: { 200: jsonContent(Proof, "The proof"), ...problems(400, 401, 403) },
    }),
    async (c) => {
      const q = c.req.valid("query");
      const { db } = c.var.deps;
      let proof: Uint8Array[];
      try {
        proof =
          q.index !== undefined && q.size !== undefined
            ? await storedInclusionProof(db, q.index, q.size)
            : await storedConsistencyProof(db, q.from ?? 0, q.to ?? 0);
      } catch (err) {
        if (err instanceof ProofRangeError) fail("validation", `No such proof: ${err.message}.`);
        throw err;
      }
      return c.json({ proof: proof.map(toBase64) }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/.well-known/audit-key",
      tags: ["audit"],
      summary: "The audit checkpoints' verifier key",
      description:
        "The C2SP signed-note verifier key `<origin>+<key id>+<base64(0x01 || Ed25519 public key)>` that signs `/v1/audit/checkpoint`.",
      responses: { 200: textContent("The verifier key"), ...problems(503) },
    }),
    (c) => {
      const key = c.var.deps.auditTrail.verifierKey();
      if (!key) fail("unavailable", "The audit key is not loaded yet.");
      c.header("Cache-Control", "public, max-age=300");
      return c.text(key, 200);
    },
  );
}
