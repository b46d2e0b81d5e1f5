import type { Clock } from "@phaselock/core";
import type { CallStore } from "./calls.ts";
import type { MemberDirectory } from "./members.ts";

/** What the gateway tells us about the request: who is calling, for which campaign, with what. */
export interface GatewayContext {
  campaign: string | null;
  volunteer: string | null;
  link: string | null;
  scopes: string[];
  /** whom the campaign tells volunteers to ask (decoded `X-Phaselock-Contact`) */
  contact: string | null;
}

export interface PhonebankDeps {
  members: MemberDirectory;
  calls: CallStore;
  clock: Clock;
}

export type PhonebankEnv = {
  Variables: {
    deps: PhonebankDeps;
    gateway: GatewayContext;
  };
};
