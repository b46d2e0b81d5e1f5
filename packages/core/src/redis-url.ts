/**
 * `REDIS_URL` names either one Redis (`redis://`, `rediss://`, as ioredis reads them) or a Redis
 * Cluster by its seed nodes: `redis+cluster://[user[:password]@]host:port[,host:port…]`
 * (`rediss+cluster://` for TLS). The scheme says which, so a single node is never taken for a
 * cluster or the reverse; the client asks the seed nodes for the rest of the cluster.
 */
export type RedisTarget =
  | { kind: "single"; url: string }
  | {
      kind: "cluster";
      nodes: Array<{ host: string; port: number }>;
      username: string | undefined;
      password: string | undefined;
      tls: boolean;
    };

const SINGLE = /^rediss?:\/\/[^\s]*$/;
const CLUSTER = /^(rediss?)\+cluster:\/\/(?:([^@/?#\s]*)@)?([^@/?#\s]+)\/?$/;
const NODE = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))(?::(\d{1,5}))$/;

/** Why `url` is not a Redis URL, or undefined when it is one. The message never contains `url`. */
export function redisUrlProblem(url: string): string | undefined {
  try {
    parseRedisUrl(url);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Parses `REDIS_URL`; throws a message that never repeats the URL (it may hold a password). */
export function parseRedisUrl(url: string): RedisTarget {
  if (SINGLE.test(url)) return { kind: "single", url };
  if (!/^rediss?\+cluster:\/\//.test(url)) {
    throw new Error("must be a redis://, rediss://, redis+cluster:// or rediss+cluster:// URL");
  }
  const m = CLUSTER.exec(url);
  if (!m) {
    throw new Error(
      "a cluster URL is redis+cluster://[user[:password]@]host:port[,host:port…] (no database, path or query)",
    );
  }
  const [, scheme, auth, hosts] = m;
  const nodes = hosts!.split(",").map((h) => {
    const n = NODE.exec(h);
    const port = Number(n?.[2]);
    if (!n || !Number.isInteger(port) || port < 1 || port > 65_535) {
      throw new Error("every cluster seed node needs a host and a port (host:port, comma-separated)");
    }
    return { host: n[1]!.replace(/^\[|\]$/g, ""), port };
  });
  let username: string | undefined;
  let password: string | undefined;
  if (auth !== undefined) {
    const colon = auth.indexOf(":");
    const user = colon === -1 ? auth : auth.slice(0, colon);
    const pass = colon === -1 ? undefined : auth.slice(colon + 1);
    try {
      username = user === "" ? undefined : decodeURIComponent(user);
      password = pass === undefined || pass === "" ? undefined : decodeURIComponent(pass);
    } catch {
      throw new Error("the cluster URL's user or password is not properly percent-encoded");
    }
  }
  return { kind: "cluster", nodes, username, password, tls: scheme === "rediss" };
}
