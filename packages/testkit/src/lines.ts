import type { ChildProcess } from "node:child_process";
import { Writable } from "node:stream";

/**
 * A log destination that appends what is written to `lines`, one entry a line (pino writes one
 * JSON line per call), for tests that read a real logger's output:
 * `createLogger({ service, destination: lineSink(lines) })`.
 */
export function lineSink(lines: string[]): Writable {
  return new Writable({
    write(chunk, _enc, done) {
      lines.push(...String(chunk).split("\n").filter(Boolean));
      done();
    },
  });
}

/** Everything a child process writes, stdout and stderr interleaved as they arrive: call the result to read it. */
export function childOutput(child: ChildProcess): () => string {
  let out = "";
  const add = (d: unknown) => {
    out += String(d);
  };
  child.stdout?.on("data", add);
  child.stderr?.on("data", add);
  return () => out;
}
