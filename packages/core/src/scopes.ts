/** Scopes a link or an entitlement can name. `members:export` is never issuable through a link. */
export const SCOPES = ["calls:read", "calls:write", "members:read", "members:export"] as const;
export type Scope = (typeof SCOPES)[number];
export const NON_ISSUABLE_SCOPES: readonly Scope[] = ["members:export"];
export const isScope = (s: string): s is Scope => (SCOPES as readonly string[]).includes(s);
