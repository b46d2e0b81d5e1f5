/**
 * The environment infra/ gives each container, parsed by the service's own schema (its env.ts,
 * production rules included) as the service would parse it at start: a misspelt name, a value the
 * service refuses, or a production secret left out fails here instead of in a crash-looping pod.
 * A Secret's value is unknown offline, so each secret reference stands for a valid sample value;
 * what is checked is that the name is one the service reads and that it is supplied at all.
 */
import { envSchema as gatewayEnv, gatewayEnvShape } from "../../services/gateway/src/env.ts";
import { envSchema as phonebankEnv } from "../../services/phonebank/src/env.ts";
import { settingsSchema, tokenServiceEnvShape } from "../../services/token-service/src/env.ts";

type Problems = string[];
type Env = Record<string, string | undefined>;

/** A service's variable names and its production parse (an issue list, empty when it starts). */
interface ServiceEnv {
  names: ReadonlySet<string>;
  parse(env: Env): string[];
  /** for the consistency rules across services */
  settings(env: Env): Record<string, unknown> | undefined;
}

const issuesOf = (result: {
  success: boolean;
  error?: { issues: { path: PropertyKey[]; message: string }[] };
}) =>
  result.success
    ? []
    : (result.error?.issues ?? []).map((i) => `${i.path.map(String).join(".") || "(env)"}: ${i.message}`);

/** Variables every container may carry: the image's own (entrypoint.sh, healthcheck.mjs). */
const IMAGE_VARS = ["SERVICE"];

const phonebankNames = [
  "NODE_ENV",
  "PHONEBANK_PORT",
  "HOST",
  "DATABASE_URL",
  "PHONEBANK_SECRET",
  "METRICS_TOKEN",
  "LOG_LEVEL",
];

export const SERVICES: Record<string, ServiceEnv> = {
  gateway: {
    names: new Set([...Object.keys(gatewayEnvShape.shape), ...IMAGE_VARS]),
    parse: (env) => issuesOf(gatewayEnv.safeParse(env)),
    settings: (env) => {
      const r = gatewayEnv.safeParse(env);
      return r.success ? { ...r.data } : undefined;
    },
  },
  "token-service": {
    names: new Set([...Object.keys(tokenServiceEnvShape.shape), ...IMAGE_VARS]),
    parse: (env) => issuesOf(settingsSchema.safeParse(env)),
    settings: (env) => {
      const r = settingsSchema.safeParse(env);
      return r.success ? { ...r.data } : undefined;
    },
  },
  phonebank: {
    names: new Set([...phonebankNames, ...IMAGE_VARS]),
    parse: (env) => issuesOf(phonebankEnv.safeParse(env)),
    settings: (env) => {
      const r = phonebankEnv.safeParse(env);
      return r.success ? { ...r.data } : undefined;
    },
  },
  // packages/db/src/cli.ts (`pnpm db:migrate`): DATABASE_URL, else the embedded one in DATA_DIR.
  migrate: {
    names: new Set(["DATABASE_URL", "DATA_DIR", "NODE_ENV", ...IMAGE_VARS]),
    parse: (env) =>
      env.DATABASE_URL && /^postgres(ql)?:\/\//.test(env.DATABASE_URL)
        ? []
        : ["DATABASE_URL: must be a postgres:// URL (the migration would go to an embedded database)"],
    settings: () => ({}),
  },
};

/**
 * A valid value for each secret a manifest references by name (never its real one): enough for
 * the schema to accept it, so what fails is the reference, not the stand-in.
 */
export const SAMPLE_SECRETS: Record<string, string> = {
  DATABASE_URL: "postgres://phaselock_app:sample@postgres:5432/phaselock",
  MIGRATE_DATABASE_URL: "postgres://phaselock:sample@postgres:5432/phaselock",
  REDIS_URL: "redis://redis:6379",
  ADMIN_TOKEN: "sample-admin-token-sample-admin-token-0001",
  KEY_ENCRYPTION_KEY: "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
  PHONEBANK_SECRET: "sample-phonebank-secret-sample-phonebank-01",
  AUDIT_IP_KEY: "sample-audit-ip-key-sample-audit-ip-key-01",
  METRICS_TOKEN: "sample-metrics-token",
  POSTGRES_PASSWORD: "sample",
};

/** One container's environment as the service sees it, with where each name came from. */
export interface ContainerEnv {
  /** "Deployment/gateway container gateway", "service gateway-1" */
  id: string;
  service: string;
  env: Env;
  /** names set one by one (env:, environment:), as opposed to a shared ConfigMap */
  explicit: string[];
}

/**
 * Each container's environment parsed by its service's schema; the names set one by one must be
 * read by that service (a shared ConfigMap may carry names for other services, but each of its
 * keys must be read by some service given it); and the settings the services must agree on agree.
 */
export function checkServiceEnvs(
  containers: ContainerEnv[],
  shared: { id: string; keys: string[]; services: string[] }[] = [],
): Problems {
  const problems: Problems = [];
  for (const c of containers) {
    const svc = SERVICES[c.service];
    if (!svc) {
      problems.push(`${c.id}: runs '${c.service}', not a service of the image`);
      continue;
    }
    for (const name of c.explicit) {
      if (!svc.names.has(name)) problems.push(`${c.id}: ${name} is not a variable ${c.service} reads`);
    }
    for (const issue of svc.parse(c.env))
      problems.push(`${c.id}: ${c.service} would refuse to start: ${issue}`);
  }
  for (const s of shared) {
    for (const key of s.keys) {
      if (!s.services.some((name) => SERVICES[name]?.names.has(key))) {
        problems.push(`${s.id}: ${key} is read by none of ${s.services.join(", ") || "its consumers"}`);
      }
    }
  }
  // Settings that must be one across services: a token is checked against the issuer the token
  // service signs it with, links point at the gateways' own public URL, and the phone bank's secret
  // and the audit IP key are the gateways' too.
  const settingsOf = (service: string) =>
    containers
      .filter((c) => c.service === service)
      .map((c) => ({ id: c.id, s: SERVICES[service]?.settings(c.env) }))
      .filter((x): x is { id: string; s: Record<string, unknown> } => x.s !== undefined);
  const tokenServices = settingsOf("token-service");
  const gateways = settingsOf("gateway");
  const phonebanks = settingsOf("phonebank");
  const agree = (what: string, pairs: { id: string; value: unknown }[]) => {
    const first = pairs[0];
    for (const p of pairs.slice(1)) {
      if (p.value !== first?.value) problems.push(`${p.id}: ${what} differs from ${first?.id}'s`);
    }
  };
  agree("the token issuer (TOKEN_SERVICE_URL)", [
    ...tokenServices.map((t) => ({ id: t.id, value: t.s.issuer })),
    ...gateways.map((g) => ({ id: g.id, value: g.s.issuer })),
  ]);
  agree("PUBLIC_GATEWAY_URL", [
    ...tokenServices.map((t) => ({ id: t.id, value: t.s.publicGatewayUrl })),
    ...gateways.map((g) => ({ id: g.id, value: g.s.publicGatewayUrl })),
  ]);
  agree("PHONEBANK_SECRET", [
    ...gateways.map((g) => ({ id: g.id, value: g.s.phonebankSecret })),
    ...phonebanks.map((p) => ({ id: p.id, value: p.s.secret })),
  ]);
  agree(
    "AUDIT_IP_KEY",
    gateways.map((g) => ({ id: g.id, value: g.s.auditIpKey })),
  );
  return problems;
}
