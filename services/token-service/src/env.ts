import { z } from "zod";

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === "" ? undefined : v));

const url = (fallback: string) =>
  z
    .url({ protocol: /^https?$/ })
    .default(fallback)
    // Link URLs and `iss` are built by appending paths: a trailing slash would double them.
    .transform((v) => v.replace(/\/+$/, ""));

/** The token service's environment, parsed once by `main.ts`. */
export const envSchema = z.object({
  NODE_ENV: z.enum(["development", "test", "production"]).default("development"),
  TOKEN_SERVICE_PORT: z.coerce.number().int().min(1).max(65_535).default(4000),
  HOST: z.string().min(1).default("127.0.0.1"),
  DATABASE_URL: optionalString.pipe(
    z
      .string()
      .regex(/^postgres(ql)?:\/\//, "DATABASE_URL must be a postgres:// URL")
      .optional(),
  ),
  DATA_DIR: z.string().min(1).default("./.data"),
  REDIS_URL: optionalString.pipe(
    z
      .string()
      .regex(/^rediss?:\/\//, "REDIS_URL must be a redis:// URL")
      .optional(),
  ),
  ADMIN_TOKEN: optionalString.pipe(
    z
      .string()
      .min(32, "ADMIN_TOKEN must be at least 32 characters")
      .max(1024, "ADMIN_TOKEN must be at most 1024 characters")
      .regex(/^[\x21-\x7e]+$/, "ADMIN_TOKEN must be printable ASCII without spaces")
      .optional(),
  ),
  KEY_ENCRYPTION_KEY: optionalString,
  PUBLIC_GATEWAY_URL: url("http://127.0.0.1:8080"),
  TOKEN_SERVICE_URL: url("http://127.0.0.1:4000"),
});

export type TokenServiceEnv = z.infer<typeof envSchema>;

/**
 * Parses the environment or throws one readable error naming every bad variable (never its value:
 * some of them are secrets).
 */
export function parseEnv(env: Record<string, string | undefined>): TokenServiceEnv {
  const result = envSchema.safeParse(env);
  if (result.success) return result.data;
  const lines = result.error.issues.map((i) => `  ${i.path.join(".") || "(env)"}: ${i.message}`);
  throw new Error(`invalid environment:\n${lines.join("\n")}`);
}
