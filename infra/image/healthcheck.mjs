// The image's HEALTHCHECK: slim images carry no curl, so Node asks the service's own /healthz.
// SERVICE names the service (compose sets it; the entrypoint's argument only reaches PID 1).
const ports = { gateway: "GATEWAY_PORT", "token-service": "TOKEN_SERVICE_PORT", phonebank: "PHONEBANK_PORT" };
const defaults = { gateway: 8080, "token-service": 4000, phonebank: 8090 };
const service = process.env.SERVICE ?? "gateway";
const port = process.env[ports[service]] ?? defaults[service];
if (port === undefined) {
  console.error(`healthcheck: unknown SERVICE ${service}`);
  process.exit(1);
}
try {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(2500) });
  process.exit(res.ok ? 0 : 1);
} catch {
  process.exit(1);
}
