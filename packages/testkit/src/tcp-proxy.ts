/**
 * A TCP proxy on 127.0.0.1 in front of a real server (Postgres, Redis), which a test can cut,
 * stall and restore: a real outage of the connection, seen by every client through it, without
 * stopping the shared server. While cut, open connections are destroyed and new ones are closed
 * at once; while stalled, every connection stays open and nothing passes.
 */
import net from "node:net";

export class TcpProxy {
  readonly #server: net.Server;
  readonly #target: { host: string; port: number };
  readonly #sockets = new Set<net.Socket>();
  #up = true;
  #stalled = false;
  /** While stalled, what each direction was sent: written on {@link restore}. */
  readonly #held: Array<() => void> = [];

  private constructor(target: { host: string; port: number }) {
    this.#target = target;
    this.#server = net.createServer((client) => this.#accept(client));
  }

  /** Listens on an ephemeral port of 127.0.0.1 and forwards to `target`. */
  static async start(target: { host: string; port: number }): Promise<TcpProxy> {
    const proxy = new TcpProxy(target);
    await new Promise<void>((resolve, reject) => {
      proxy.#server.once("error", reject);
      proxy.#server.listen(0, "127.0.0.1", () => resolve());
    });
    return proxy;
  }

  get port(): number {
    return (this.#server.address() as net.AddressInfo).port;
  }

  get up(): boolean {
    return this.#up;
  }

  /** Drops every connection and refuses new ones until {@link restore}. */
  cut(): void {
    this.#up = false;
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    this.#held.length = 0;
  }

  restore(): void {
    this.#up = true;
    this.#stalled = false;
    for (const flush of this.#held.splice(0)) flush();
  }

  /**
   * Keeps every connection open but passes nothing on, either way, until {@link restore}: a
   * server that stopped answering (paused, or behind a partition that drops packets), which a
   * client notices only by waiting. New connections are accepted and stall too.
   */
  stall(): void {
    this.#stalled = true;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #accept(client: net.Socket): void {
    if (!this.#up) {
      // A reset, as from a host whose port is closed: a clean close right after accept looks to
      // postgres.js like a connection still starting, and it would retry forever, silently.
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(this.#target);
    this.#sockets.add(client);
    this.#sockets.add(upstream);
    const end = () => {
      client.destroy();
      upstream.destroy();
      this.#sockets.delete(client);
      this.#sockets.delete(upstream);
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    const forward = (from: net.Socket, to: net.Socket) =>
      from.on("data", (chunk: Buffer) => {
        if (this.#stalled) this.#held.push(() => to.destroyed || to.write(chunk));
        else to.write(chunk);
      });
    forward(client, upstream);
    forward(upstream, client);
  }
}

/** `url` with its host and port replaced by the proxy's (credentials and db index kept). */
export function viaProxy(url: string, proxy: TcpProxy): string {
  const u = new URL(url);
  u.hostname = "127.0.0.1";
  u.port = String(proxy.port);
  return u.toString();
}

/** The host and port a `redis://` or `postgres://` URL points at. */
export function targetOf(url: string): { host: string; port: number } {
  const u = new URL(url);
  const defaultPort = u.protocol.startsWith("redis") ? 6379 : 5432;
  return { host: u.hostname || "127.0.0.1", port: Number(u.port || defaultPort) };
}
