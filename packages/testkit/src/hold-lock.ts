/**
 * A real second process for the lock tests: takes DATA_DIR's lock (argv: dir, command, ports
 * JSON), says `held <pid>` on stdout, and keeps it until SIGTERM (released) or SIGKILL (stale).
 */
import { acquireDataDirLock } from "@phaselock/core";

const [dir, command, ports] = process.argv.slice(2);
if (!dir) throw new Error("usage: hold-lock DIR [COMMAND] [PORTS_JSON]");
acquireDataDirLock(dir, {
  command: command ?? "hold-lock",
  ports: ports ? (JSON.parse(ports) as Record<string, number>) : {},
});
process.on("SIGTERM", () => process.exit(0));
process.stdout.write(`held ${process.pid}\n`);
setInterval(() => {}, 60_000);
