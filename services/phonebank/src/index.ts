export { createApp, type PhonebankOptions } from "./app.ts";
export { type Call, CallStore, OUTCOMES, type Outcome, type RecordedOutcome } from "./calls.ts";
export type { GatewayContext, PhonebankDeps, PhonebankEnv } from "./deps.ts";
export { DEV_PHONEBANK_SECRET } from "./env.ts";
export {
  createMemberDirectory,
  DEFAULT_MEMBER_COUNT,
  DEFAULT_MEMBER_SEED,
  generateMember,
  type Member,
  type MemberDirectory,
  memberId,
} from "./members.ts";
