import { Readable } from "node:stream";
import type { BodySource } from "./upstream.ts";

export type BodyRead =
  | { ok: true; bytes: Uint8Array }
  | { ok: false; reason: "too_large" | "timeout" | "aborted" };

/**
 * Reads a request body whole, at most `max` bytes, within `timeoutMs`. The proxy does this before
 * it takes an upstream connection, so a client that trickles its body holds only its own socket,
 * never one of the pool's. The stream is left unread, not destroyed, on the way out: destroying an
 * IncomingMessage would take the socket, and the refusal, along (the caller closes the connection
 * after answering instead).
 */
export async function readBody(body: BodySource, max: number, timeoutMs: number): Promise<BodyRead> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), timeoutMs);
  });
  const iterator =
    body instanceof Readable
      ? (body.iterator({ destroyOnReturn: false }) as AsyncIterator<Uint8Array>)
      : body[Symbol.asyncIterator]();
  try {
    for (;;) {
      const next = await Promise.race([iterator.next(), deadline]);
      if (next === "timeout") {
        release(body, iterator);
        return { ok: false, reason: "timeout" };
      }
      if (next.done) break;
      total += next.value.byteLength;
      if (total > max) {
        release(body, iterator);
        return { ok: false, reason: "too_large" };
      }
      chunks.push(next.value);
    }
  } catch {
    return { ok: false, reason: "aborted" };
  } finally {
    clearTimeout(timer);
  }
  return { ok: true, bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks) };
}

/** Stops reading: a node stream is left for node to discard, a web stream is cancelled. */
function release(body: BodySource, iterator: AsyncIterator<Uint8Array>): void {
  if (body instanceof Readable) {
    // A pending next() stays pending on a paused stream; errors later must not go unhandled.
    body.on("error", () => {});
    return;
  }
  void iterator.return?.().catch(() => {});
}
