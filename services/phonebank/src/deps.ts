import type { Clock } from "@phaselock/core";
import type { CallStore } from "./calls.ts";
import type { MemberDirectory } from "./members.ts";

/** What the gateway tells us about the request: who is calling, for which campaign, with what. */
export interface GatewayContext {
  campaign: string | null;
  volunteer: string | null;
  link: string | null;
  scopes: string[];
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
