/** Checks a Lua script's reply shape; anything else is a store failure, never an allow. */
export function integers(reply: unknown, n: number): number[] {
  if (!Array.isArray(reply) || reply.length !== n || !reply.every((v) => Number.isInteger(v))) {
    throw new Error("unexpected reply from Redis script");
  }
  return reply as number[];
}
