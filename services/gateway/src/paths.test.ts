import { describe, expect, it } from "vitest";
import { normalizePath } from "./paths.ts";

describe("normalizePath accepts", () => {
  it.each([
    ["/pb", "/", ""],
    ["/pb/", "/", ""],
    ["/pb/calls/next", "/calls/next", ""],
    ["/pb/calls/next?x=1", "/calls/next", "?x=1"],
    ["/pb/calls/next?", "/calls/next", ""],
    ["/pb/calls/c_abc/outcome", "/calls/c_abc/outcome", ""],
    ["/pb/members/m_000123", "/members/m_000123", ""],
    ["/pb/members/export", "/members/export", ""],
    // An encoded spelling of a literal is forwarded as the plain literal, so the scope check and
    // the upstream's router see the same segment.
    ["/pb/members/%65xport", "/members/export", ""],
    ["/pb/members/%65XPORT", "/members/eXPORT", ""],
    ["/pb/members/m%20x", "/members/m%20x", ""],
    ["/pb/members/a:b@c", "/members/a:b@c", ""],
    ["/pb/members/%3a", "/members/:", ""],
    ["/pb/members/...", "/members/...", ""],
    ["/pb/members/.x", "/members/.x", ""],
    ["/pb/calls/next/", "/calls/next/", ""],
    // The query is not the path: encoded separators there are the app's business.
    ["/pb/calls/next?a=%2f..%2e&b=\\", "/calls/next", "?a=%2f..%2e&b=\\"],
  ])("%s → %s %s", (raw, path, query) => {
    expect(normalizePath(raw)).toEqual({ ok: true, path, query, target: path + query });
  });
});

describe("normalizePath refuses", () => {
  it.each([
    // traversal, raw and encoded
    "/pb/members/..%2fexport",
    "/pb/members/..%2Fexport",
    "/pb/%2e%2e/members/export",
    "/pb/%2E%2E/members/export",
    "/pb/members/%2e",
    "/pb/members/.%2e/export",
    "/pb/../members/export",
    "/pb/members/../export",
    "/pb/members/..",
    "/pb/./calls/next",
    "/pb/calls/.",
    "/pb/.",
    "/pb/..",
    // double encoding
    "/pb/members/%252e%252e/export",
    "/pb/members/%252fexport",
    "/pb/members/%25",
    // empty segments
    "/pb//members/export",
    "/pb/members//export",
    "//pb/members",
    "/pb//",
    // backslashes, raw and encoded
    "/pb\\members",
    "/pb/members\\export",
    "/pb/members/%5cexport",
    "/pb/members/%5C..%5Cexport",
    // control characters, raw and encoded; non-ASCII; spaces
    "/pb/members/m\u0000",
    "/pb/members/%00",
    "/pb/members/m%0a",
    "/pb/members/m%0D%0Ax-evil:1",
    "/pb/members/%7f",
    "/pb/members/m x",
    "/pb/members/m\t",
    "/pb/members/é",
    "/pb/calls/next?x=\n",
    // malformed percent-encoding
    "/pb/members/%",
    "/pb/members/%zz",
    "/pb/members/%c3%28",
    // outside the prefix
    "/",
    "",
    "/pbx",
    "/pbx/members/export",
    "/pb.",
    "/pb;x/members",
    "/PB/calls/next",
    "/members/export",
    "pb/calls/next",
    "http://evil.example/pb/calls/next",
    "*",
    // fragments never travel
    "/pb/calls/next#x",
  ])("%j", (raw) => {
    expect(normalizePath(raw)).toEqual({ ok: false });
  });
});
