import { FakeClock } from "@phaselock/core";
import { describe, expect, it } from "vitest";
import { ConsoleSessions } from "./sessions.ts";

describe("ConsoleSessions", () => {
  it("answers a session by its cookie value only, with a fresh 256-bit id and CSRF token each time", () => {
    const s = new ConsoleSessions({ clock: new FakeClock("2020-03-01T12:00:00Z") });
    const a = s.create("secret-a");
    const b = s.create("secret-a");
    expect(a.id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.id).not.toBe(b.id);
    expect(a.session.csrf).not.toBe(b.session.csrf);
    expect(s.get(a.id)?.credential).toBe("secret-a");
    expect(s.get(`${a.id}x`)).toBeNull();
    expect(s.get(undefined)).toBeNull();
  });

  it("ends a session after the idle time, and after the absolute time however active", () => {
    const clock = new FakeClock("2020-03-01T12:00:00Z");
    const s = new ConsoleSessions({ clock, idleMs: 10_000, absoluteMs: 25_000 });
    const idle = s.create("k");
    const busy = s.create("k");
    for (let t = 0; t < 2; t++) {
      clock.advance(9_000);
      expect(s.get(busy.id)).not.toBeNull();
    }
    expect(s.get(idle.id)).toBeNull();
    clock.advance(6_000);
    expect(s.get(busy.id)).not.toBeNull();
    clock.advance(1_000);
    expect(s.get(busy.id)).toBeNull();
    expect(s.size).toBe(0);
  });

  it("holds at most maxSessions, dropping the least recently used", () => {
    const clock = new FakeClock("2020-03-01T12:00:00Z");
    const s = new ConsoleSessions({ clock, maxSessions: 2 });
    const a = s.create("a");
    const b = s.create("b");
    expect(s.get(a.id)).not.toBeNull();
    const c = s.create("c");
    expect(s.size).toBe(2);
    expect(s.get(b.id)).toBeNull();
    expect(s.get(a.id)?.credential).toBe("a");
    expect(s.get(c.id)?.credential).toBe("c");
  });

  it("keeps the newest few downloads of a session", () => {
    const s = new ConsoleSessions({ clock: new FakeClock("2020-03-01T12:00:00Z") });
    const { session } = s.create("k");
    const ids = Array.from({ length: 7 }, (_, i) => s.keepDownload(session, `f${i}.csv`, "ref\n"));
    expect([...session.downloads.keys()]).toEqual(ids.slice(2));
  });

  it("holds at most maxPerCredential sessions of one key, so one key holder cannot sign everyone else out", () => {
    const clock = new FakeClock("2020-03-01T12:00:00Z");
    const s = new ConsoleSessions({ clock, maxSessions: 4, maxPerCredential: 2 });
    const admin = s.create("admin");
    const mine = Array.from({ length: 10 }, () => s.create("coordinator"));
    // The admin's session survives a flood of sign-ins with another key.
    expect(s.get(admin.id)?.credential).toBe("admin");
    expect(s.size).toBe(3);
    // The flooding key keeps only its newest sessions.
    expect(mine.slice(0, 8).every((m) => s.get(m.id) === null)).toBe(true);
    expect(mine.slice(8).every((m) => s.get(m.id)?.credential === "coordinator")).toBe(true);
  });

  it("bounds the bytes of downloads one session keeps", () => {
    const s = new ConsoleSessions({ clock: new FakeClock("2020-03-01T12:00:00Z"), maxDownloadBytes: 10 });
    const { session } = s.create("k");
    const a = s.keepDownload(session, "a.csv", "123456");
    const b = s.keepDownload(session, "b.csv", "123456");
    expect([...session.downloads.keys()]).toEqual([b]);
    expect(a).not.toBe(b);
  });

  it("bounds the bytes of downloads all sessions keep together, oldest first, and frees a session's with it", () => {
    const s = new ConsoleSessions({
      clock: new FakeClock("2020-03-01T12:00:00Z"),
      maxDownloadBytes: 100,
      maxTotalDownloadBytes: 25,
    });
    // One key signed in ten times, each session keeping a file under its own limit.
    const sessions = Array.from({ length: 10 }, () => s.create("coordinator"));
    const ids = sessions.map(({ session }, i) => s.keepDownload(session, `f${i}.csv`, "1234567890"));
    expect(s.downloadBytes).toBe(20);
    expect(sessions.slice(0, 8).every(({ session }) => session.downloads.size === 0)).toBe(true);
    expect(sessions[8]!.session.downloads.has(ids[8]!)).toBe(true);
    expect(sessions[9]!.session.downloads.has(ids[9]!)).toBe(true);
    // A session signed out gives its downloads back to the budget.
    s.delete(sessions[9]!.id);
    expect(s.downloadBytes).toBe(10);
  });
});
