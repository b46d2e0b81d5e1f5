import { randomId } from "@phaselock/core";
import type { Member, MemberDirectory } from "./members.ts";

export const OUTCOMES = ["answered", "no_answer", "refused", "wrong_number"] as const;
export type Outcome = (typeof OUTCOMES)[number];

export interface RecordedOutcome {
  outcome: Outcome;
  notes: string | null;
  recordedAt: Date;
  volunteer: string | null;
}

/** One call handed to a volunteer. */
export interface Call {
  id: string;
  campaign: string;
  volunteer: string | null;
  link: string | null;
  memberId: string;
  assignedAt: Date;
  outcome: RecordedOutcome | null;
}

export type RecordResult = { ok: true; call: Call } | { ok: false; reason: "not_found" | "already_recorded" };

/**
 * In-memory calls: a round-robin cursor per campaign over the member directory, and the calls
 * handed out (the oldest forgotten past `maxCalls`, so memory stays bounded).
 */
export class CallStore {
  readonly #members: MemberDirectory;
  readonly #maxCalls: number;
  readonly #cursors = new Map<string, number>();
  readonly #calls = new Map<string, Call>();
  /**
   * The ids handed out, oldest first, as a ring of `maxCalls` slots: the slot a new call takes
   * holds the id to forget. (`#calls.keys().next()` finds the oldest too, but V8 walks the deleted
   * entries at the front of a Map to get there: up to ~100 µs a call once the store is full.)
   */
  readonly #ring: (string | undefined)[];
  #ringAt = 0;

  constructor(opts: { members: MemberDirectory; maxCalls?: number }) {
    this.#members = opts.members;
    this.#maxCalls = opts.maxCalls ?? 100_000;
    if (!Number.isInteger(this.#maxCalls) || this.#maxCalls < 1) {
      throw new RangeError("maxCalls must be a positive integer");
    }
    this.#ring = new Array<string | undefined>(this.#maxCalls).fill(undefined);
  }

  /** Assigns the campaign's next member, in order `m_000001`, `m_000002`, … and round again. */
  next(
    ctx: { campaign: string; volunteer: string | null; link: string | null },
    now: Date,
  ): { call: Call; member: Member } {
    const cursor = this.#cursors.get(ctx.campaign) ?? 0;
    this.#cursors.set(ctx.campaign, (cursor + 1) % this.#members.count);
    const member = this.#members.at(cursor);
    const call: Call = {
      id: randomId("c"),
      campaign: ctx.campaign,
      volunteer: ctx.volunteer,
      link: ctx.link,
      memberId: member.id,
      assignedAt: now,
      outcome: null,
    };
    const oldest = this.#ring[this.#ringAt];
    if (oldest !== undefined) this.#calls.delete(oldest);
    this.#ring[this.#ringAt] = call.id;
    this.#ringAt = (this.#ringAt + 1) % this.#maxCalls;
    this.#calls.set(call.id, call);
    return { call, member };
  }

  /**
   * Records the outcome of a call of this campaign, once. A call of another campaign is
   * `not_found`, the same as an unknown id: a campaign cannot learn about another's calls.
   */
  record(
    id: string,
    campaign: string,
    outcome: Omit<RecordedOutcome, "recordedAt">,
    now: Date,
  ): RecordResult {
    const call = this.#calls.get(id);
    if (!call || call.campaign !== campaign) return { ok: false, reason: "not_found" };
    if (call.outcome) return { ok: false, reason: "already_recorded" };
    call.outcome = { ...outcome, recordedAt: now };
    return { ok: true, call };
  }
}
