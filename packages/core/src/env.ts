import { isIPv6 } from "node:net";
import { z } from "zod";
import { redisUrlProblem } from "./redis-url.ts";
import { DEV_PHONEBANK_SECRET } from "./secrets.ts";

/** An optional variable where an empty or blank value counts as unset. */
export const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === "" ? undefined : v));

/**
 * A variable with a default where an empty or blank value counts as unset, as for the optional
 * ones ({@link optionalString}): `MAX_BODY_BYTES=` or `DATA_DIR=` in a compose file keeps the
 * default, where coercion alone would read 0 and a string rule would refuse it.
 */
export const blankIsUnset = <S extends z.ZodType>(schema: S) =>
  z.preprocess((v) => (typeof v === "string" && v.trim() === "" ? undefined : v), schema);

/** An http(s) URL with a default; trailing slashes dropped because callers append paths. */
export const httpUrl = (fallback: string) =>
  z
    .url({ protocol: /^https?$/ })
    .default(fallback)
    .transform((v) => v.replace(/\/+$/, ""));

/** An optional http(s) URL, unset when empty; trailing slashes dropped because callers append paths. */
export const optionalHttpUrl = optionalString.pipe(
  z
    .url({ protocol: /^https?$/ })
    .transform((v) => v.replace(/\/+$/, ""))
    .optional(),
);

/** `host` as a URL writes it: an IPv6 address in brackets. */
const urlHost = (host: string): string => (isIPv6(host) ? `[${host}]` : host);

/**
 * `HOST`: the listen address of every service. It must be writable in a URL, since the services'
 * own URLs are derived from it (see {@link localServiceUrl}).
 */
export const listenHost = blankIsUnset(
  z
    .string()
    .min(1)
    .default("127.0.0.1")
    .refine((v) => URL.canParse(`http://${urlHost(v)}:1/`), "must be a host name or an IP address"),
);

/** `0.0.0.0`, `::` and their spellings: every address, where a server listens but no client connects. */
const isWildcard = (host: string): boolean =>
  host === "0.0.0.0" || (isIPv6(host) && new URL(`http://[${host}]/`).hostname === "[::]");

/**
 * The URL a client on this machine reaches a service listening on `host`:`port` by: `host` when it
 * names one address, 127.0.0.1 when it is a wildcard.
 */
export const localServiceUrl = (host: string, port: number): string =>
  `http://${isWildcard(host) ? "127.0.0.1" : urlHost(host)}:${port}`;

/**
 * The token service's URL, the `iss` of every token: `TOKEN_SERVICE_URL`, else where the token
 * service listens (`TOKEN_SERVICE_PORT` on `HOST`). The token service and the gateway both take it
 * from here, so one environment gives them the same issuer.
 */
export const tokenServiceUrl = (env: {
  TOKEN_SERVICE_URL?: string | undefined;
  TOKEN_SERVICE_PORT: number;
  HOST: string;
}): string => env.TOKEN_SERVICE_URL ?? localServiceUrl(env.HOST, env.TOKEN_SERVICE_PORT);

/**
 * The base of the link URLs handed out (and the origin redemptions are posted from):
 * `PUBLIC_GATEWAY_URL`, else where the gateway listens (`GATEWAY_PORT` on `HOST`), the contract's
 * `http://127.0.0.1:8080` by default. The token service and the gateway both take it from here,
 * so a gateway moved to another port by one environment still gets the links that reach it.
 */
export const publicGatewayUrl = (env: {
  PUBLIC_GATEWAY_URL?: string | undefined;
  GATEWAY_PORT: number;
  HOST: string;
}): string => env.PUBLIC_GATEWAY_URL ?? localServiceUrl(env.HOST, env.GATEWAY_PORT);

export const port = (fallback: number) =>
  blankIsUnset(z.coerce.number().int().min(1).max(65_535).default(fallback));

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
 * deployments may share one Redis. A colon inside is fine (`acme:phaselock`, the usual Redis
 * namespace form); no braces (a cluster hash tag is the stores' to place), spaces or globs.
 */
export const redisPrefix = blankIsUnset(
  z
    .string()
    .regex(
      /^[A-Za-z0-9_.-](?:[A-Za-z0-9_.:-]{0,62}[A-Za-z0-9_.-])?$/,
      "must be 1-64 letters, digits, '_', '.', '-' or ':' (not at either end)",
    )
    .default("phaselock"),
);

/** `DATA_DIR`: where the embedded database lives; blank is unset, as for the CLIs. */
export const dataDir = blankIsUnset(z.string().min(1).default("./.data"));

/**
 * `DATABASE_URL` for the CLIs (`pnpm db:migrate`, `pnpm audit:export`, `pnpm audit:archive`), by
 * the services' rule ({@link postgresUrl}): blank is unset; anything but a postgres:// URL throws
 * the services' own "invalid environment" error, before anything is opened or connected to.
 */
export const databaseUrlOf = (env: Record<string, string | undefined>): string | undefined =>
  parseEnv(z.object({ DATABASE_URL: postgresUrl }), { DATABASE_URL: env.DATABASE_URL }).DATABASE_URL;

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

/**
 * `METRICS_TOKEN`: when set, `GET /metrics` requires it as a bearer credential. Any length: the
 * operator's choice (it guards operational counters, never member data); printable, no spaces.
 */
export const metricsToken = optionalString.pipe(
  z
    .string()
    .max(1024, "must be at most 1024 characters")
    .regex(/^[\x21-\x7e]+$/, "must be printable ASCII without spaces")
    .optional(),
);

/** `LOG_LEVEL`: pino's levels; `silent` writes nothing. */
export const logLevel = z
  .enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])
  .default("info");

/**
 * `PHONEBANK_SECRET`, for the phone bank and the gateway alike (and so `pnpm start`): unset, a
 * development secret is used; set, at least 32 characters, or the phone bank refuses to start and a
 * gateway holding it would answer every request 502.
 */
export const phonebankSecret = optionalString.pipe(
  z.string().min(32, "must be at least 32 characters").optional(),
);

/**
 * `PHONEBANK_SECRET` with `NODE_ENV=production`, for the phone bank and the gateway alike (a
 * gateway holding one the phone bank refuses would answer every request 502): set, at least 32
 * characters, and not the development secret.
 */
export function productionPhonebankSecret(secret: string | undefined, ctx: z.RefinementCtx): void {
  const path = ["PHONEBANK_SECRET"];
  if (secret === undefined) {
    ctx.addIssue({ code: "custom", path, message: "is required when NODE_ENV=production" });
  } else if (secret.length < 32) {
    ctx.addIssue({ code: "custom", path, message: "must be at least 32 characters" });
  } else if (secret === DEV_PHONEBANK_SECRET) {
    ctx.addIssue({
      code: "custom",
      path,
      message: "must not be the development secret when NODE_ENV=production",
    });
  }
}

/**
 * `DB_STALL_TIMEOUT_MS`: how long a Postgres may leave the stall watch's probe unanswered before
 * the pool's connections are cut (packages/db/src/stall-watch.ts); `0` turns the watch off (say,
 * behind a PgBouncer that queues new connections for longer). Empty is unset, not 0.
 */
export const dbStallTimeoutMs = optionalString.pipe(
  z.coerce.number<string | undefined>().int().min(0).max(600_000).optional(),
);
