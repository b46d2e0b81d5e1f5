/**
 * Child: the floor any gateway pays: a keep-alive node:http reverse proxy with no checks at all.
 * Streams both ways, strips the `/pb` prefix and the hop-by-hop headers, nothing else.
 */
import { Agent, createServer, type IncomingHttpHeaders, request } from "node:http";
import { close, listen, runChild } from "../child.ts";

export interface BareProxyConfig {
  upstreamPort: number;
}

const HOP_BY_HOP = [
  "connection",
  "keep-alive",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
];

function strip(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out = { ...headers };
  for (const h of HOP_BY_HOP) delete out[h];
  return out;
}

runChild<BareProxyConfig>(async (config) => {
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  const server = createServer((req, res) => {
    const url = req.url ?? "/";
    const path = url.startsWith("/pb/") ? url.slice(3) : url;
    const up = request(
      {
        host: "127.0.0.1",
        port: config.upstreamPort,
        method: req.method,
        path,
        headers: strip(req.headers),
        agent,
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, strip(upRes.headers));
        upRes.pipe(res);
      },
    );
    up.on("error", () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  server.keepAliveTimeout = 30_000;
  const port = await listen(server);
  return {
    port,
    stop: async () => {
      await close(server);
      agent.destroy();
      return undefined;
    },
  };
});
