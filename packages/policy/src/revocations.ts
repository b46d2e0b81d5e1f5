import { epochSeconds } from "@phaselock/core";
import { missingRevocationField, type Revocation } from "./revocation-schema.ts";
import type { LinkClaims } from "./types.ts";

type Claims = Pick<LinkClaims, "jti" | "sub" | "iat" | "cmp" | "cst" | "phs">;

// Length-prefixing the first part keeps composite keys unambiguous whatever the ids contain.
const pair = (a: string, b: string): string => `${a.length}:${a}|${b}`;

/**
 * Every revocation, indexed so that {@link RevocationIndex.covers} costs a fixed number of map
 * lookups whatever the number of revocations. Apart from `link`, a revocation covers every
 * matching link issued up to its `effectiveAt` second (`iat <= floor(effectiveAt)`), so each key
 * keeps only the revocation with the latest watermark.
 */
export class RevocationIndex {
  readonly #links = new Map<string, Revocation>();
  readonly #volunteers = new Map<string, Revocation>();
  readonly #volunteersInCampaign = new Map<string, Revocation>();
  readonly #campaigns = new Map<string, Revocation>();
  readonly #phases = new Map<string, Revocation>();
  readonly #contests = new Map<string, Revocation>();
  #all: Revocation | undefined;
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
    switch (r.scope) {
      case "link": {
        if (!this.#links.has(r.linkId)) this.#links.set(r.linkId, r);
        break;
      }
      case "volunteer": {
        if (r.campaignId) keepLatest(this.#volunteersInCampaign, pair(r.campaignId, r.volunteerRef), r);
        else keepLatest(this.#volunteers, r.volunteerRef, r);
        break;
      }
      case "campaign":
        keepLatest(this.#campaigns, r.campaignId, r);
        break;
      case "phase":
        keepLatest(this.#phases, pair(r.contestId, r.phase), r);
        break;
      case "contest":
        keepLatest(this.#contests, r.contestId, r);
        break;
      case "all":
        if (!this.#all || watermark(r) > watermark(this.#all)) this.#all = r;
        break;
      default:
        throw new Error(`revocation ${(r as Revocation).id} has an unknown scope`);
    }
    this.#count++;
  }

  /** The revocation that covers a link with these claims, or undefined when none does. */
  covers(claims: Claims): Revocation | undefined {
    const link = this.#links.get(claims.jti);
    if (link) return link;
    const hit = (r: Revocation | undefined): r is Revocation => r !== undefined && claims.iat <= watermark(r);
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

const watermark = (r: Revocation): number => epochSeconds(r.effectiveAt);

function keepLatest(map: Map<string, Revocation>, key: string, r: Revocation): void {
  const prev = map.get(key);
  if (!prev || watermark(r) > watermark(prev)) map.set(key, r);
}
