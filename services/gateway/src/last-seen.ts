/**
 * Remembers when each link was last used and writes it in the background every `intervalMs`, so
 * `GET /v1/links/:id` can show "last seen" without a database write on every proxied request.
 */
export function createLastSeen(opts: {
  touch: (linkId: string, at: Date) => Promise<void>;
  intervalMs?: number;
  onError?: ((err: unknown) => void) | undefined;
}) {
  let pending = new Map<string, Date>();
  const flush = async () => {
    const batch = pending;
    pending = new Map();
    for (const [id, at] of batch) {
      await opts.touch(id, at).catch((err: unknown) => opts.onError?.(err));
    }
  };
  const timer = setInterval(() => void flush(), opts.intervalMs ?? 5000);
  timer.unref();
  return {
    seen(linkId: string, at: Date): void {
      pending.set(linkId, at);
    },
    flush,
    async stop() {
      clearInterval(timer);
      await flush();
    },
  };
}
