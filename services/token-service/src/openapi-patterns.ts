/**
 * `pattern`s as JSON Schema wants them. zod-to-openapi writes a regex as its `toString()` without
 * the slashes at either end, so one with flags kept its closing slash and flags:
 * `/^[^\p{Cc}]*$/u` became `^[^\p{Cc}]*$/u`, which matches nothing, and a client validating against
 * the document refused every volunteer ref, name and reason. JSON Schema patterns are ECMA-262
 * with Unicode semantics (what the `u` flag gives), so the source alone is the pattern. `source`
 * escapes every `/` it holds, so an unescaped one followed by flags at the end is the delimiter.
 */
const FLAGS_SUFFIX = /(?<!\\)\/[dgimsuvy]*$/;

export function fixPatternFlags<D>(doc: D): D {
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const item of node) walk(item);
    } else if (node !== null && typeof node === "object") {
      const obj = node as Record<string, unknown>;
      for (const [key, value] of Object.entries(obj)) {
        if (key === "pattern" && typeof value === "string") obj[key] = value.replace(FLAGS_SUFFIX, "");
        else walk(value);
      }
    }
  };
  walk(doc);
  return doc;
}
