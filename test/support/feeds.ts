/**
 * Change feeds for the cross-service stack: the in-process bus (one shared by every service) or
 * Redis pub/sub (one RedisBus, so two connections, per service), and a tap that sits between the
 * token service and its bus to count or lose messages.
 */
import { type BusListener, type ChangeBus, type ChangeHint, MemoryBus, RedisBus } from "@phaselock/state";

export interface Feed {
  readonly kind: "memory" | "redis";
  /** The bus one service uses. Closing it never closes another service's. */
  bus(role: string): ChangeBus;
  /** Proves the feed alive to every subscriber now (the in-process bus beats only when told). */
  beat(): void;
  close(): Promise<void>;
}

/** The single-instance feed: every service shares one in-process bus, which beats only on `beat()`. */
export function memoryFeed(): Feed {
  const shared = new MemoryBus({ heartbeatMs: 0 });
  return {
    kind: "memory",
    bus: () => ({
      publish: (msg) => shared.publish(msg),
      subscribe: (listener) => shared.subscribe(listener),
      // A service going away unsubscribes (PolicyState.stop); the shared bus stays up for the rest.
      close: async () => {},
    }),
    beat: () => shared.heartbeat(),
    close: () => shared.close(),
  };
}

export interface RedisFeedOptions {
  url: string;
  /** A unique channel prefix per test file (testkit `uniquePrefix`). */
  prefix: string;
  /** Real-time heartbeat interval of every bus; default 100 ms. */
  heartbeatMs?: number;
}

/** Redis pub/sub: each service gets its own RedisBus (publisher and subscriber connections). */
export function redisFeed(opts: RedisFeedOptions): Feed & { errors: unknown[] } {
  const buses = new Set<RedisBus>();
  const errors: unknown[] = [];
  return {
    kind: "redis",
    errors,
    bus: () => {
      const bus = new RedisBus({
        url: opts.url,
        prefix: opts.prefix,
        heartbeatMs: opts.heartbeatMs ?? 100,
        onError: (err) => errors.push(err),
      });
      buses.add(bus);
      return bus;
    },
    beat: () => {},
    close: async () => {
      await Promise.all([...buses].map((b) => b.close()));
    },
  };
}

/**
 * Wraps the token service's bus: records the hints it publishes and can lose the next ones, as a
 * feed that drops one would (the write stands; gateways read the log on their next heartbeat).
 */
export class TapBus implements ChangeBus {
  readonly published: ChangeHint[] = [];
  readonly dropped: ChangeHint[] = [];
  readonly #inner: ChangeBus;
  #drop = 0;

  constructor(inner: ChangeBus) {
    this.#inner = inner;
  }

  /** The next `n` messages are lost instead of published. */
  dropNext(n = 1): void {
    this.#drop += n;
  }

  async publish(msg: ChangeHint): Promise<void> {
    if (this.#drop > 0) {
      this.#drop--;
      this.dropped.push(msg);
      return;
    }
    await this.#inner.publish(msg);
    this.published.push(msg);
  }

  subscribe(listener: BusListener): () => void {
    return this.#inner.subscribe(listener);
  }

  close(): Promise<void> {
    return this.#inner.close();
  }
}
