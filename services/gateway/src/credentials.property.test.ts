import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { credentialFrom, SESSION_COOKIE } from "./request-context.ts";

// Header values an attacker controls: plain strings, and strings built from the pieces the
// parsers split on, so that the interesting shapes come up often.
const piece = fc.constantFrom(
  "Bearer",
  "bearer",
  "BEARER",
  " ",
  "\t",
  "\n",
  "\r\n",
  ";",
  "=",
  ",",
  '"',
  "%20",
  "%09",
  "%0a",
  "%",
  SESSION_COOKIE,
  "tok",
  "a.b.c",
  "é",
  "\u00a0",
  "\u2028",
);
const headerValue = fc.oneof(
  fc.string(),
  fc.string({ unit: "binary" }),
  fc.array(piece).map((p) => p.join("")),
);
const cookieHeader = fc.oneof(
  headerValue,
  fc.tuple(headerValue, headerValue).map(([before, value]) => `${before}; ${SESSION_COOKIE}=${value}`),
);
/** An RFC 9110 auth-scheme token other than Bearer, then nothing or a space and anything. */
const anotherScheme = (v: string) => /^(?!bearer(?: |$))[!#$%&'*+.^_`|~0-9A-Za-z-]+(?: [^\r\n]*)?$/i.test(v);
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
const credential = fc.stringMatching(/^[A-Za-z0-9_.~-]{1,80}$/);

describe("credentialFrom (property)", () => {
  it("never throws, and gives a string only when a bearer or a session cookie was sent", () => {
    fc.assert(
      fc.property(maybe(headerValue), maybe(cookieHeader), (authorization, cookie) => {
        const out = credentialFrom(authorization, cookie);
        if (authorization === undefined && !cookie?.includes(SESSION_COOKIE)) expect(out).toBeUndefined();
        if (out !== undefined && out !== "") {
          const fromBearer = authorization !== undefined && /^bearer /i.test(authorization);
          const fromCookie =
            (authorization === undefined || !/^bearer /i.test(authorization)) &&
            (cookie ?? "").includes(SESSION_COOKIE);
          expect(fromBearer || fromCookie).toBe(true);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it("never returns a value with whitespace in it", () => {
    fc.assert(
      fc.property(maybe(headerValue), maybe(cookieHeader), (authorization, cookie) => {
        expect(credentialFrom(authorization, cookie) ?? "").not.toMatch(/\s/);
      }),
      { numRuns: 1000 },
    );
    // Found by the property: the cookie parser keeps inner spaces and percent-decodes, so these
    // once came back as credentials with whitespace in them.
    for (const cookie of [`${SESSION_COOKIE}=a b`, `${SESSION_COOKIE}=a%20b`, `${SESSION_COOKIE}=%0aabc`]) {
      expect(credentialFrom(undefined, cookie)).toBe("");
    }
  });

  it("bearer wins over the cookie, whatever the cookie says", () => {
    fc.assert(
      fc.property(
        credential,
        maybe(cookieHeader),
        fc.constantFrom("Bearer ", "bearer ", "BEARER   "),
        (t, cookie, scheme) => {
          expect(credentialFrom(`${scheme}${t}`, cookie)).toBe(t);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("a malformed Authorization header is a present but empty credential, never the cookie's", () => {
    fc.assert(
      fc.property(headerValue, credential, (authorization, t) => {
        fc.pre(!/^Bearer[ ]+[^\s]+\s*$/i.test(authorization) && !anotherScheme(authorization));
        expect(credentialFrom(authorization, `${SESSION_COOKIE}=${t}`)).toBe("");
      }),
      { numRuns: 500 },
    );
    for (const authorization of [
      "",
      " ",
      "Bearer",
      "Bearer ",
      "bearer  ",
      "Bearer\ttok",
      "Bearer a b",
      "Basic\tx",
    ]) {
      expect(credentialFrom(authorization, `${SESSION_COOKIE}=tok`), authorization).toBe("");
    }
  });

  it("an Authorization of another scheme (Basic from a proxy in front) leaves the cookie to count", () => {
    const scheme = fc
      .stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,11}$/)
      .filter((s) => s.toLowerCase() !== "bearer");
    fc.assert(
      fc.property(
        scheme,
        fc.option(fc.stringMatching(/^[A-Za-z0-9+/=:]{1,40}$/)),
        credential,
        (s, cred, t) => {
          const authorization = cred === null ? s : `${s} ${cred}`;
          expect(credentialFrom(authorization, `${SESSION_COOKIE}=${t}`)).toBe(t);
          expect(credentialFrom(authorization, undefined)).toBeUndefined();
        },
      ),
      { numRuns: 500 },
    );
    expect(credentialFrom("Basic dm9sdW50ZWVyOnN0YWdpbmc=", `${SESSION_COOKIE}=tok`)).toBe("tok");
  });

  it("finds the session cookie among others, as sent", () => {
    const otherCookie = fc
      .tuple(fc.stringMatching(/^[a-z]{1,8}$/), fc.stringMatching(/^[A-Za-z0-9]{0,12}$/))
      .filter(([name]) => name !== SESSION_COOKIE)
      .map(([n, v]) => `${n}=${v}`);
    fc.assert(
      fc.property(fc.array(otherCookie), fc.array(otherCookie), credential, (before, after, t) => {
        const cookie = [...before, `${SESSION_COOKIE}=${t}`, ...after].join("; ");
        expect(credentialFrom(undefined, cookie)).toBe(t);
      }),
      { numRuns: 500 },
    );
  });
});
