/**
 * The headers every gateway answer carries, on either transport. Add a header here, not as Hono
 * middleware: in production `/pb/*` is answered by node-handler.ts and never passes through Hono,
 * so middleware would silently miss every proxied answer. The Hono app (app.ts), the proxy core
 * (both transports) and every refusal apply this one list.
 */
export function answerHeaders(requestId: string): readonly (readonly [name: string, value: string])[] {
  return [
    ["x-request-id", requestId],
    // No answer of ours or the upstream's is to be sniffed into another type (a JSON body as HTML).
    ["x-content-type-options", "nosniff"],
  ];
}

/** Whether an upstream header must not reach the volunteer because we set it ourselves. */
export function isAnswerHeader(name: string): boolean {
  return name === "x-request-id" || name === "x-content-type-options";
}
