import { BlockList, isIP } from "node:net";

// Who the client is, when the gateway may sit behind load balancers. A client can write any
// `X-Forwarded-For` it likes, so a received chain is believed only from a peer the operator listed
// (`TRUSTED_PROXIES`), and only as far back as the hops that are themselves trusted.

/** A parsed `TRUSTED_PROXIES` entry check: IPs and CIDRs, IPv4 or IPv6. */
export function isProxyEntry(entry: string): boolean {
  const [ip, bits, ...rest] = entry.split("/");
  if (rest.length > 0 || !ip) return false;
  const family = isIP(ip);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

/** `::ffff:10.0.0.1` (how a dual-stack socket reports an IPv4 peer) is `10.0.0.1`. */
function plainAddress(ip: string): string {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  return mapped ? mapped[1]! : ip;
}

function trustedList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of entries) {
    const [ip, bits] = entry.split("/") as [string, string | undefined];
    const type = isIP(ip) === 6 ? "ipv6" : "ipv4";
    if (bits === undefined) list.addAddress(ip, type);
    else list.addSubnet(ip, Number(bits), type);
  }
  return list;
}

export interface Forwarded {
  /** the client's address by the rule above: what the audit hashes and a device falls back on */
  client: string | undefined;
  /** the `X-Forwarded-For` the gateway sends upstream: the believed chain, then the peer */
  chain: string | undefined;
}

/**
 * The client behind `peer` (the socket's remote address). With no trusted proxy, or a peer that
 * is not one, the peer is the client and the received header is ignored. From a trusted peer, the
 * received chain is kept from its right end up to the first entry that is not an IP address (what
 * lies left of it cannot be relayed as addresses), the peer is appended, and the client is the
 * rightmost address that is not a trusted proxy.
 */
export function resolveForwarded(
  trusted: readonly string[] | undefined,
  peer: string | undefined,
  received: string | undefined,
): Forwarded {
  if (!peer) return { client: undefined, chain: undefined };
  const self = plainAddress(peer);
  if (!trusted || trusted.length === 0 || !received) return { client: self, chain: self };
  const list = trustedList(trusted);
  const isTrusted = (ip: string) => list.check(ip, isIP(ip) === 6 ? "ipv6" : "ipv4");
  if (!isTrusted(self)) return { client: self, chain: self };

  const hops = [self];
  for (const raw of received.split(",").reverse()) {
    const ip = plainAddress(raw.trim());
    if (isIP(ip) === 0) break;
    hops.unshift(ip);
  }
  const client = [...hops].reverse().find((ip) => !isTrusted(ip)) ?? hops[0];
  return { client, chain: hops.join(", ") };
}
