/**
 * What a coordinator and a volunteer do, as requests: seed contests and campaigns and issue links
 * through the token service's API; open, redeem and use links at a gateway.
 */
import type { GatewayApp, Stack } from "./stack.ts";

let seq = 0;
/** A unique slug for this process, so tests in one file never collide. */
export const uid = (prefix: string): string => `${prefix}-${process.pid}-${++seq}`;

export interface PhaseSpec {
  name: string;
  startsAt: Date | string;
  endsAt: Date | string;
  memberData: boolean;
}

export const MEMBER_SCOPES = ["calls:read", "calls:write", "members:read"];

const iso = (d: Date | string): string => new Date(d).toISOString();

/** PUT a contest's timeline (admin). Throws unless 200. */
export async function putContest(stack: Stack, id: string, phases: PhaseSpec[], name = `Contest ${id}`) {
  const body = {
    name,
    phases: phases.map((p) => ({ ...p, startsAt: iso(p.startsAt), endsAt: iso(p.endsAt) })),
  };
  const r = await stack.api("PUT", `/v1/contests/${id}`, { body });
  if (r.status !== 200) throw new Error(`PUT contest ${id}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** PUT a campaign and its entitlements per phase (admin). Throws on failure. */
export async function putCampaign(
  stack: Stack,
  id: string,
  contestId: string,
  entitlements: Record<string, string[]> = {},
) {
  const r = await stack.api("PUT", `/v1/campaigns/${id}`, { body: { name: `Campaign ${id}`, contestId } });
  if (r.status !== 200) throw new Error(`PUT campaign ${id}: ${r.status} ${JSON.stringify(r.body)}`);
  for (const [phase, scopes] of Object.entries(entitlements)) {
    const e = await stack.api("PUT", `/v1/campaigns/${id}/entitlements/${phase}`, { body: { scopes } });
    if (e.status !== 200)
      throw new Error(`PUT entitlement ${id}/${phase}: ${e.status} ${JSON.stringify(e.body)}`);
  }
}

/**
 * A contest whose one phase, `open` (member data), runs from a day before now to 30 days after,
 * and a campaign entitled to calls and member reads in it.
 */
export async function seedOpen(stack: Stack, opts: { campaigns?: number } = {}) {
  const now = stack.clock.now().getTime();
  const contestId = uid("contest");
  await putContest(stack, contestId, [
    {
      name: "open",
      startsAt: new Date(now - 86_400_000),
      endsAt: new Date(now + 30 * 86_400_000),
      memberData: true,
    },
  ]);
  const campaignIds: string[] = [];
  for (let i = 0; i < (opts.campaigns ?? 1); i++) {
    const id = uid("campaign");
    await putCampaign(stack, id, contestId, { open: MEMBER_SCOPES });
    campaignIds.push(id);
  }
  return { contestId, campaignId: campaignIds[0]!, campaignIds, phase: "open" };
}

export interface IssuedLink {
  id: string;
  url: string;
  token: string;
  notBefore: string;
  expiresAt: string;
}

export interface LinkRequest {
  campaignId: string;
  phase: string;
  volunteer?: { ref: string; name?: string };
  scopes?: string[];
  ttlSeconds?: number;
  maxUses?: number;
}

const linkBody = (req: LinkRequest) => ({
  scopes: MEMBER_SCOPES,
  ...req,
  volunteer: req.volunteer ?? { ref: uid("vol") },
});

/** POST /v1/links; throws unless 201. */
export async function issue(stack: Stack, req: LinkRequest, token?: string): Promise<IssuedLink> {
  const r = await stack.api<IssuedLink>("POST", "/v1/links", { body: linkBody(req), token });
  if (r.status !== 201) throw new Error(`issue: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

/** POST /v1/links, whatever it answers. */
export const tryIssue = (stack: Stack, req: LinkRequest, token?: string) =>
  stack.api<{ code?: string } & Partial<IssuedLink>>("POST", "/v1/links", { body: linkBody(req), token });

/** The token of a link URL (`…/l/<token>`). */
export const tokenOf = (url: string): string => new URL(url).pathname.replace(/^\/l\//, "");

/** GET /l/:token, the landing page. */
export const landing = (gw: GatewayApp, token: string, accept = "text/html") =>
  gw.request(`/l/${token}`, { headers: { accept } });

/** POST /l/:token (the "Start calling" button): the session cookie when it answers 303. */
export async function redeem(
  gw: GatewayApp,
  token: string,
): Promise<{ res: Response; cookie: string | null }> {
  const res = await gw.request(`/l/${token}`, { method: "POST" });
  const set = res.headers.getSetCookie().find((c) => c.startsWith("pl_session="));
  const cookie = set ? set.split(";")[0]! : null;
  return { res, cookie };
}

export interface PbOptions {
  bearer?: string;
  cookie?: string;
  method?: string;
  body?: unknown;
  accept?: string;
}

/** A request to the checked proxy, `/pb<path>`. */
export async function pb(gw: GatewayApp, path: string, o: PbOptions = {}): Promise<Response> {
  const headers: Record<string, string> = { accept: o.accept ?? "application/json" };
  if (o.bearer !== undefined) headers.authorization = `Bearer ${o.bearer}`;
  if (o.cookie !== undefined) headers.cookie = o.cookie;
  if (o.body !== undefined) headers["content-type"] = "application/json";
  return gw.request(`/pb${path}`, {
    method: o.method ?? "GET",
    headers,
    ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
  });
}

/** GET /pb/calls/next with a bearer session: the status and, for a refusal, its code. */
export async function nextCall(
  gw: GatewayApp,
  token: string,
): Promise<{ status: number; code: string | null }> {
  const res = await pb(gw, "/calls/next", { bearer: token });
  return { status: res.status, code: await errorCode(res) };
}

/** The `error.code` of a gateway refusal, or null for anything else. */
export async function errorCode(res: Response): Promise<string | null> {
  const text = await res.text();
  try {
    const json = JSON.parse(text) as { error?: { code?: unknown } };
    return typeof json.error?.code === "string" ? json.error.code : null;
  } catch {
    return null;
  }
}
