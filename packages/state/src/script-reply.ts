/** Checks a Lua script's reply shape; anything else is a store failure, never an allow. */
export function integers(reply: unknown, n: number): number[] {
  if (!Array.isArray(reply) || reply.length !== n || !reply.every((v) => Number.isInteger(v))) {
    throw new Error("unexpected reply from Redis script");
  }
  return reply as number[];
}

/**
 * Keys plus arguments of one script call at most. ioredis failed inside its auto-pipeline on a
 * call of ~100,000 arguments (a callback left without a reply); the meters split far below that.
 */
export const MAX_SCRIPT_ARGS = 16_384;
