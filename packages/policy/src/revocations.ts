import { epochSeconds } from "@phaselock/core";
import { missingRevocationField, type Revocation } from "./revocation-schema.ts";
import type { LinkClaims } from "./types.ts";

type Claims = Pick<LinkClaims, "jti" | "sub" | "iat" | "cmp" | "cst" | "phs">;

// Length-prefixing the first part keeps composite keys unambiguous whatever the ids contain.
const pair = (a: string, b: string): string => `${a.length}:${a}|${b}`;

/** What {@link RevocationIndex.covers} answers: which revocation covers the link. */
export interface RevocationHit {
  id: string;
}

/** A watermark scope's entry: the revocation's id and its watermark (epoch seconds). */
interface Watermark {
  id: string;
  at: number;
}

/**
 * Every revocation, indexed so that {@link RevocationIndex.covers} costs a fixed number of map
 * lookups whatever the number of revocations. Apart from `link`, a revocation covers every
 * matching link issued up to its `effectiveAt` second (`iat <= floor(effectiveAt)`), so each key
 * keeps only the revocation with the latest watermark.
 *
 * Keeps only what the decision needs: a link revocation's id, a watermark's id and second. A
 * gateway holding 100,000 revocations kept ~48 MB of revocation objects; this keeps ~10 MB.
 */
export class RevocationIndex {
  readonly #links = new Map<string, string>();
  readonly #volunteers = new Map<string, Watermark>();
  readonly #volunteersInCampaign = new Map<string, Watermark>();
  readonly #campaigns = new Map<string, Watermark>();
  readonly #phases = new Map<string, Watermark>();
  readonly #contests = new Map<string, Watermark>();
  #all: Watermark | undefined;
  #count = 0;

  constructor(revocations: Iterable<Revocation> = []) {
    for (const r of revocations) this.add(r);
  }

  /** Number of revocations added (including ones superseded by a later watermark). */
  get size(): number {
    return this.#count;
  }

  /** Adds one revocation. Throws when it lacks the field its scope matches on (a bug upstream). */
  add(r: Revocation): void {
    const missing = missingRevocationField(r);
    if (missing) throw new Error(`revocation ${r.id} (scope ${r.scope}) has no ${missing}`);
    if (r.scope === "link") {
      if (!this.#links.has(r.linkId)) this.#links.set(r.linkId, r.id);
      this.#count++;
      return;
    }
    const w: Watermark = { id: r.id, at: epochSeconds(r.effectiveAt) };
    switch (r.scope) {
      case "volunteer": {
        if (r.campaignId) keepLatest(this.#volunteersInCampaign, pair(r.campaignId, r.volunteerRef), w);
        else keepLatest(this.#volunteers, r.volunteerRef, w);
        break;
      }
      case "campaign":
        keepLatest(this.#campaigns, r.campaignId, w);
        break;
      case "phase":
        keepLatest(this.#phases, pair(r.contestId, r.phase), w);
        break;
      case "contest":
        keepLatest(this.#contests, r.contestId, w);
        break;
      case "all":
        if (!this.#all || w.at > this.#all.at) this.#all = w;
        break;
      default:
        throw new Error(`revocation ${(r as Revocation).id} has an unknown scope`);
    }
    this.#count++;
  }

  /** The revocation that covers a link with these claims, or undefined when none does. */
  covers(claims: Claims): RevocationHit | undefined {
    const link = this.#links.get(claims.jti);
    if (link !== undefined) return { id: link };
    const hit = (w: Watermark | undefined): w is Watermark => w !== undefined && claims.iat <= w.at;
    const candidates = [
      this.#all,
      this.#contests.get(claims.cst),
      this.#phases.get(pair(claims.cst, claims.phs)),
      this.#campaigns.get(claims.cmp),
      this.#volunteers.get(claims.sub),
      this.#volunteersInCampaign.get(pair(claims.cmp, claims.sub)),
    ];
    return candidates.find(hit);
  }
}

function keepLatest(map: Map<string, Watermark>, key: string, w: Watermark): void {
  const prev = map.get(key);
  if (!prev || w.at > prev.at) map.set(key, w);
}
