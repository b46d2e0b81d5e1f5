import { describe, expect, it } from "vitest";
import { createLastSeen } from "./last-seen.ts";

describe("last seen", () => {
  it("keeps the latest use per link and writes each once per flush", async () => {
    const writes: Array<[string, string]> = [];
    const ls = createLastSeen({ touch: async (id, at) => void writes.push([id, at.toISOString()]) });
    ls.seen("a", new Date("2020-01-01T00:00:01Z"));
    ls.seen("a", new Date("2020-01-01T00:00:02Z"));
    ls.seen("b", new Date("2020-01-01T00:00:03Z"));
    await ls.flush();
    await ls.flush();
    expect(writes).toEqual([
      ["a", "2020-01-01T00:00:02.000Z"],
      ["b", "2020-01-01T00:00:03.000Z"],
    ]);
    ls.seen("c", new Date("2020-01-01T00:00:04Z"));
    await ls.stop();
    expect(writes).toHaveLength(3);
  });
});
