/** Talks to the token service, in process or over HTTP. */
export type Request = (path: string, init: { method: string; body?: unknown }) => Promise<Response>;

export interface DemoLinks {
  /** issued during ge-2019's campaign phase, whose timeline was then closed: refused `phase_closed` */
  leftover: { url: string; expect: string };
  /** a nominations-phase issuance attempt for leadership-2020: refused by the token service */
  nominations: { status: number; code: string };
  /** a ballot-phase link for starmer-2020: works */
  ballot: { url: string; expect: string };
}

const DAY = 86_400_000;
const MEMBER_DATA_SCOPES = ["calls:read", "calls:write", "members:read"];

/**
 * Seeds the contract's demo data through the token service's own API, so the demo exercises the
 * same checks as real use: `ge-2019` (campaign phase ended 2019-12-12) with `labour-ge-2019`;
 * `leadership-2020` with `nominations` (no member data) just over and `ballot` running now, and
 * campaigns `starmer-2020` (entitled on the ballot) and `long-bailey-2020` (not yet entitled to
 * member records).
 */
export async function seedDemo(request: Request, now: Date): Promise<DemoLinks> {
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await request(path, { method, body });
    const json = res.status === 204 ? null : await res.json();
    return { status: res.status, json: json as Record<string, unknown> };
  };
  const must = async (method: string, path: string, body?: unknown) => {
    const r = await call(method, path, body);
    if (r.status >= 300)
      throw new Error(`seed: ${method} ${path} answered ${r.status} ${JSON.stringify(r.json)}`);
    return r.json;
  };
  const iso = (ms: number) => new Date(ms).toISOString();
  const t = now.getTime();

  // The 2020 incident: a general-election timeline left open, links issued against it...
  await must("PUT", "/v1/contests/ge-2019", {
    name: "General election 2019",
    phases: [
      { name: "campaign", startsAt: "2019-11-06T00:00:00.000Z", endsAt: iso(t + 60 * DAY), memberData: true },
    ],
  });
  await must("PUT", "/v1/campaigns/labour-ge-2019", { name: "Labour GE 2019", contestId: "ge-2019" });
  await must("PUT", "/v1/campaigns/labour-ge-2019/entitlements/campaign", { scopes: MEMBER_DATA_SCOPES });
  const leftover = await must("POST", "/v1/links", {
    campaignId: "labour-ge-2019",
    phase: "campaign",
    volunteer: { ref: "ge-volunteer-0001", name: "Leftover volunteer" },
    scopes: ["calls:read", "calls:write", "members:read"],
    ttlSeconds: 60 * 86_400,
  });
  // ...then the timeline set to what it really was: every link of that phase ends at once.
  await must("PUT", "/v1/contests/ge-2019", {
    name: "General election 2019",
    phases: [
      {
        name: "campaign",
        startsAt: "2019-11-06T00:00:00.000Z",
        endsAt: "2019-12-12T22:00:00.000Z",
        memberData: true,
      },
    ],
  });

  await must("PUT", "/v1/contests/leadership-2020", {
    name: "Leadership election 2020",
    phases: [
      { name: "nominations", startsAt: iso(t - 14 * DAY), endsAt: iso(t - DAY), memberData: false },
      { name: "ballot", startsAt: iso(t - DAY), endsAt: iso(t + 21 * DAY), memberData: true },
    ],
  });
  await must("PUT", "/v1/campaigns/starmer-2020", {
    name: "Keir Starmer 2020",
    contestId: "leadership-2020",
    // Demo data: whom the refusal pages tell volunteers to ask.
    contact: "Sam Organiser, volunteers@starmer-2020.example",
  });
  await must("PUT", "/v1/campaigns/long-bailey-2020", {
    name: "Rebecca Long-Bailey 2020",
    contestId: "leadership-2020",
  });
  await must("PUT", "/v1/campaigns/starmer-2020/entitlements/ballot", { scopes: MEMBER_DATA_SCOPES });
  await must("PUT", "/v1/campaigns/long-bailey-2020/entitlements/ballot", {
    scopes: ["calls:read", "calls:write"],
  });

  const nominations = await call("POST", "/v1/links", {
    campaignId: "starmer-2020",
    phase: "nominations",
    volunteer: { ref: "sm-volunteer-0001" },
    scopes: ["calls:read"],
  });
  const ballot = await must("POST", "/v1/links", {
    campaignId: "starmer-2020",
    phase: "ballot",
    volunteer: { ref: "sm-volunteer-0002", name: "Demo volunteer" },
    scopes: ["calls:read", "calls:write", "members:read"],
    ttlSeconds: 7 * 86_400,
    maxUses: 20,
  });

  return {
    leftover: {
      url: String(leftover.url),
      expect: "refused: phase_closed (ge-2019's campaign phase ended 2019-12-12)",
    },
    nominations: { status: nominations.status, code: String(nominations.json?.code) },
    ballot: { url: String(ballot.url), expect: "works: press Start calling" },
  };
}
