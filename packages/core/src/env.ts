import { z } from "zod";
import { redisUrlProblem } from "./redis-url.ts";

/** An optional variable where an empty or blank value counts as unset. */
export const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === "" ? undefined : v));

/** An http(s) URL with a default; trailing slashes dropped because callers append paths. */
export const httpUrl = (fallback: string) =>
  z
    .url({ protocol: /^https?$/ })
    .default(fallback)
    .transform((v) => v.replace(/\/+$/, ""));

export const port = (fallback: number) => z.coerce.number().int().min(1).max(65_535).default(fallback);

export const postgresUrl = optionalString.pipe(
  z
    .string()
    .regex(/^postgres(ql)?:\/\//, "must be a postgres:// URL")
    .optional(),
);

/**
 * `REDIS_URL`: one Redis (`redis://`, `rediss://`) or a Redis Cluster by its seed nodes
 * (`redis+cluster://host:port,host:port`, `rediss+cluster://` for TLS); see {@link parseRedisUrl}.
 */
export const redisUrl = optionalString.pipe(
  z
    .string()
    .superRefine((v, ctx) => {
      const problem = redisUrlProblem(v);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    })
    .optional(),
);

/**
 * `REDIS_PREFIX`: names every Redis key and channel (`<prefix>:changes`, `<prefix>:rl:…`), so
 * deployments may share one Redis. No colon or space: the separator is added by the stores.
 */
export const redisPrefix = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,64}$/, "must be 1-64 letters, digits, '_', '.' or '-'")
  .default("phaselock");

export const nodeEnv = z.enum(["development", "test", "production"]).default("development");

/**
 * Parses the environment or throws one readable error naming every bad variable (never its
 * value: some are secrets).
 */
export function parseEnv<S extends z.ZodType>(
  schema: S,
  env: Record<string, string | undefined>,
): z.infer<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const lines = result.error.issues.map((i) => `  ${i.path.join(".") || "(env)"}: ${i.message}`);
  throw new Error(`invalid environment:\n${lines.join("\n")}`);
}

/** `METRICS_TOKEN`: when set, `GET /metrics` requires it as a bearer credential. */
export const metricsToken = optionalString.pipe(
  z
    .string()
    .min(16, "must be at least 16 characters")
    .max(1024, "must be at most 1024 characters")
    .regex(/^[\x21-\x7e]+$/, "must be printable ASCII without spaces")
    .optional(),
);

/** `LOG_LEVEL`: pino's levels; `silent` writes nothing. */
export const logLevel = z
  .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
  .default("info");
