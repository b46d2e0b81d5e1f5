import { type DestinationStream, type Logger as PinoLogger, pino } from "pino";

export type { DestinationStream } from "pino";

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const CREDENTIAL_KEYS = [
  "authorization",
  "cookie",
  "set-cookie",
  "session",
  "sessionToken",
  "token",
  "accessToken",
  "linkToken",
  "key",
  "apiKey",
  "api_key",
  "x-api-key",
  "privateKey",
  "secret",
  "password",
  "adminToken",
  "metricsToken",
  "x-phaselock-gateway-secret",
];

/**
 * Every credential path pino replaces by `[redacted]`: at the top of a line, one level down
 * (`headers.cookie`, `err.token`) and under `req.headers`/`res.headers`. Defence in depth: request
 * lines carry no header and no query in the first place, and their paths are masked by route
 * (log-path.ts).
 */
export const REDACT_PATHS: readonly string[] = CREDENTIAL_KEYS.flatMap((k) => {
  const key = /^[A-Za-z_$][\w$]*$/.test(k) ? k : `["${k}"]`;
  const dot = key.startsWith("[") ? key : `.${key}`;
  return [key, `*${dot}`, `req.headers${dot}`, `res.headers${dot}`];
});

export interface LoggerOptions {
  service: string;
  level?: LogLevel | undefined;
  /** Default: stdout. Tests pass a stream to read the lines. */
  destination?: DestinationStream | undefined;
}

/** Stdout for pino, buffered: several loggers of one process may share it. */
export const stdoutDestination = (): DestinationStream => pino.destination({ dest: 1, sync: false });

/** A pino JSON logger (one object per line) for one service, credentials redacted. */
export function createLogger(opts: LoggerOptions): PinoLogger {
  return pino(
    {
      level: opts.level ?? "info",
      base: { service: opts.service },
      redact: { paths: [...REDACT_PATHS], censor: "[redacted]" },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    opts.destination ?? stdoutDestination(),
  );
}

export type { PinoLogger };

/**
 * Writes `msg` at `info` whatever `LOG_LEVEL` says: the line saying a service listens, which
 * people and scripts wait for.
 */
export function announce(logger: PinoLogger, msg: string): void {
  logger.child({}, { level: "info" }).info(msg);
}

/** The `(message, data)` logger the services' own code calls, written through pino. */
export interface MessageLogger {
  info(msg: string, data?: Record<string, unknown>): void;
  warn(msg: string, data?: Record<string, unknown>): void;
  error(msg: string, data?: Record<string, unknown>): void;
}

export function messageLogger(logger: PinoLogger): MessageLogger {
  return {
    info: (msg, data) => logger.info(data ?? {}, msg),
    warn: (msg, data) => logger.warn(data ?? {}, msg),
    error: (msg, data) => logger.error(data ?? {}, msg),
  };
}

const MAX_ERROR_TEXT = 1_000;
const FAILED_QUERY = "Failed query: ";
const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/@]*):[^\s@/]*@/gi;

/**
 * An error as one loggable line: `name: message`, with a failed query's parameters dropped (an
 * insert's parameters may be a secret, a key or a token hash; drizzle puts them in the message)
 * and its cause's message appended instead, a URL's password replaced by `***`, at most ~1,000
 * characters.
 */
export function errorText(err: unknown): string {
  if (!(err instanceof Error)) return bound(String(err).replace(URL_PASSWORD, "$1:***@"));
  let text = err.message;
  if (text.startsWith(FAILED_QUERY)) {
    const cut = text.indexOf("\nparams:");
    if (cut !== -1) text = text.slice(0, cut);
    const cause = (err as { cause?: unknown }).cause;
    if (cause instanceof Error) text += ` (${cause.name}: ${cause.message})`;
    else if (cause !== undefined) text += ` (${String(cause)})`;
    return bound(text.replace(URL_PASSWORD, "$1:***@"));
  }
  const named = err.name && err.name !== "Error" ? `${err.name}: ${text}` : text;
  return bound(named.replace(URL_PASSWORD, "$1:***@"));
}

const bound = (text: string): string =>
  text.length > MAX_ERROR_TEXT ? `${text.slice(0, MAX_ERROR_TEXT)}…` : text;
