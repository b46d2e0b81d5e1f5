#!/usr/bin/env bash
# Validates infra/ offline: renders the kustomize base and checks it against the Kubernetes API
# schemas, checks the compose file against the Compose Specification schema, parses every
# container's environment with its service's own schema (check/env.ts), and lints the
# Dockerfile (no Docker engine here: the image is linted, never built). Then it breaks each file
# on purpose and expects the check to say so, so a check that passes everything cannot hide.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

command -v kubectl >/dev/null || { echo "infra/check.sh: kubectl is required (kubectl kustomize)" >&2; exit 1; }
cd "$here" # tsx and the schemas resolve from infra/'s own dependencies
validate() { node --import tsx "$here/check/validate.ts" "$@"; }

kubectl kustomize "$here/k8s/base" >"$tmp/rendered.yaml"
validate k8s "$tmp/rendered.yaml"
# Every overlay, with the same checks: what is deployed is an overlay, not the base.
overlays=0
for overlay in "$here"/k8s/overlays/*/; do
  [ -f "$overlay/kustomization.yaml" ] || continue
  name="$(basename "$overlay")"
  kubectl kustomize "$overlay" >"$tmp/overlay-$name.yaml"
  validate k8s "$tmp/overlay-$name.yaml"
  overlays=$((overlays + 1))
done
validate compose "$here/compose.yaml"
validate dockerfile "$here/Dockerfile" "$root"
validate grafana "$here/grafana/phaselock.json"

# Each mutation must be refused for its own reason: `expect_refused WHY MODE FILE MESSAGE`.
refused=0
expect_refused() {
  if validate "$2" "$3" "$root" >"$tmp/out" 2>&1 || ! grep -qF -- "$4" "$tmp/out"; then
    echo "infra/check.sh: the $2 check did not refuse a broken file ($1) with \"$4\"" >&2
    cat "$tmp/out" >&2
    exit 1
  fi
  refused=$((refused + 1))
}
mutate() { sed -e "$2" "$1"; }
k8s="$tmp/rendered.yaml"
mutate "$k8s" 's/^  replicas: 2$/  replicas: two/' >"$tmp/k1.yaml"
expect_refused "replicas not an integer" k8s "$tmp/k1.yaml" "schema:"
mutate "$k8s" 's/readinessProbe:/startupProbe2:/' >"$tmp/k2.yaml"
expect_refused "no readiness probe" k8s "$tmp/k2.yaml" "no readinessProbe"
mutate "$k8s" 's/^kind: HorizontalPodAutoscaler$/kind: HorizontalPodAutoscalerX/' >"$tmp/k3.yaml"
expect_refused "no HPA" k8s "$tmp/k3.yaml" "no HorizontalPodAutoscaler scales"
awk '/name: phonebank-from-gateway-only/{p=1} p&&/app.kubernetes.io\/name: gateway/{sub(/gateway/,"token-service");p=0} {print}' "$k8s" >"$tmp/k4.yaml"
expect_refused "phone bank open to the token service" k8s "$tmp/k4.yaml" "admits more than the gateway"
awk '/secretKeyRef:/ && !done {print "                  optional: false"; done=1} {print}' "$k8s" |
  sed -e '0,/valueFrom:/s//value: inline-secret/' -e '0,/secretKeyRef:/s//x-ref:/' >"$tmp/k5.yaml"
expect_refused "inline secret" k8s "$tmp/k5.yaml" "must come from a Secret"
mutate "$k8s" '/limits:/,/memory:/d' >"$tmp/k6.yaml"
expect_refused "no resource limits" k8s "$tmp/k6.yaml" "no resources.limits"
mutate "$k8s" 's#mountPath: /data/checkpoints#mountPath: /data/elsewhere#' >"$tmp/k7.yaml"
expect_refused "checkpoints in the read-only image" k8s "$tmp/k7.yaml" "is not on a writable persistentVolumeClaim mount"
mutate "$k8s" 's/^  - ReadWriteMany$/  - ReadWriteOnce/' >"$tmp/k8.yaml"
expect_refused "one node's claim for two replicas" k8s "$tmp/k8.yaml" "share it: ReadWriteMany"
mutate "$k8s" '/^  sessionAffinity: ClientIP$/d' >"$tmp/k9.yaml"
expect_refused "console sessions on a random replica" k8s "$tmp/k9.yaml" "keep console sessions in memory"
mutate "$k8s" 's/^  LOG_LEVEL: info$/  LOG_LEVEL: verbose/' >"$tmp/k10.yaml"
expect_refused "a value the services refuse" k8s "$tmp/k10.yaml" "would refuse to start: LOG_LEVEL"
mutate "$k8s" 's/- name: GATEWAY_PORT$/- name: GATEWAY_PROT/' >"$tmp/k11.yaml"
expect_refused "a misspelt variable" k8s "$tmp/k11.yaml" "GATEWAY_PROT is not a variable gateway reads"
awk '/- name: AUDIT_IP_KEY$/{skip=5} skip>0{skip--;next} {print}' "$k8s" >"$tmp/k12.yaml"
expect_refused "a production secret left out" k8s "$tmp/k12.yaml" "AUDIT_IP_KEY: is required when NODE_ENV=production"
mutate "$k8s" 's#^  TRUSTED_PROXIES: ""$#  TRUSTED_PROXIES: "10.0.0.0/33"#' >"$tmp/k25.yaml"
expect_refused "proxies the gateway cannot parse" k8s "$tmp/k25.yaml" "would refuse to start: TRUSTED_PROXIES"
mutate "$k8s" 's/^  UPSTREAM_URL: /  UPSTREAM: /' >"$tmp/k13.yaml"
expect_refused "a ConfigMap key nobody reads" k8s "$tmp/k13.yaml" "UPSTREAM is read by none of"
mutate "$k8s" '/^        - --check$/d' >"$tmp/k26.yaml"
expect_refused "a gateway migrating as the services' role" k8s "$tmp/k26.yaml" "the services must not connect as the tables' owner"
mutate "$k8s" '/^        - --grant$/d' >"$tmp/k28.yaml"
expect_refused "a migration that leaves new tables ungranted" k8s "$tmp/k28.yaml" "migrates without --grant ROLE"
mutate "$k8s" '/^        - --wait$/d' >"$tmp/k27.yaml"
expect_refused "a gateway that does not wait for the migration" k8s "$tmp/k27.yaml" "nothing in the pod migrates it: wait for the migration"
mutate "$k8s" 's/key: MIGRATE_DATABASE_URL$/key: DATABASE_URL/' >"$tmp/k14.yaml"
expect_refused "services connected as the owner" k8s "$tmp/k14.yaml" "must not connect as the tables' owner"
mutate "$k8s" '/^        lifecycle:$/,/^              - "5"$/d' >"$tmp/k15.yaml"
expect_refused "no pause before the listener closes" k8s "$tmp/k15.yaml" "no preStop pause"
mutate "$k8s" 's/^      terminationGracePeriodSeconds: 30$/      terminationGracePeriodSeconds: 15/' >"$tmp/k16.yaml"
expect_refused "a grace period shorter than the drain" k8s "$tmp/k16.yaml" "terminationGracePeriodSeconds 15 <"
awk '{print} /^kind: /{d=($0=="kind: Deployment")} d&&/^  name: gateway$/{g=1} g&&/^spec:$/{print "  replicas: 2"; g=0}' "$k8s" >"$tmp/k19.yaml"
expect_refused "a count the autoscaler owns" k8s "$tmp/k19.yaml" "sets replicas while HorizontalPodAutoscaler/gateway scales it"
awk '/readinessProbe:/{r=1} r&&/path: \/readyz/{sub(/\/readyz/,"/healthz"); r=0} {print}' "$k8s" >"$tmp/k20.yaml"
expect_refused "readiness that ignores the database" k8s "$tmp/k20.yaml" "readinessProbe must GET /readyz"
awk '/livenessProbe:/{l=1} l&&/port: 8080/{sub(/8080/,"8090"); l=0} {print}' "$k8s" >"$tmp/k21.yaml"
expect_refused "a probe on another port" k8s "$tmp/k21.yaml" "livenessProbe asks port 8090"
awk '/^kind: PodDisruptionBudget$/{p=1} p&&/^  name: token-service$/{sub(/token-service/,"other")} p&&/app.kubernetes.io\/name: token-service/{sub(/token-service/,"nothing"); p=0} {print}' "$k8s" >"$tmp/k22.yaml"
expect_refused "the token service drained all at once" k8s "$tmp/k22.yaml" "no PodDisruptionBudget selects the token-service's pods"
mutate "$k8s" 's/topologyKey: kubernetes.io\/hostname/topologyKey: example.org\/rack/' >"$tmp/k23.yaml"
expect_refused "every replica on one node" k8s "$tmp/k23.yaml" "no topologySpreadConstraints over kubernetes.io/hostname"
one="$tmp/overlay-one-token-service.yaml"
mutate "$one" 's/^  maxUnavailable: 1$/  minAvailable: 1/' >"$tmp/k24.yaml"
expect_refused "a budget no drain can meet" k8s "$tmp/k24.yaml" "blocks every node drain"
mutate "$one" 's/^    type: Recreate$/    type: RollingUpdate/' >"$tmp/k17.yaml"
expect_refused "a rolling update on a claim of one node" k8s "$tmp/k17.yaml" "a surge pod on another node cannot mount it"
mutate "$one" 's/^  replicas: 1$/  replicas: 2/' >"$tmp/k18.yaml"
expect_refused "two replicas on a claim of one node" k8s "$tmp/k18.yaml" "share it: ReadWriteMany"

compose="$here/compose.yaml"
awk '/^  gateway-2:/{skip=1} /^  # Reachable only/{skip=0} !skip' "$compose" >"$tmp/c1.yaml"
expect_refused "one gateway" compose "$tmp/c1.yaml" "two gateways expected"
mutate "$compose" 's/^    restart: unless-stopped$/    restart_policy: sometimes/' >"$tmp/c2.yaml"
expect_refused "unknown service key" compose "$tmp/c2.yaml" "must NOT have additional properties"
mutate "$compose" 's/^    networks: \[upstream\]$/    networks: [upstream, backend]/' >"$tmp/c3.yaml"
expect_refused "phone bank on the backend network" compose "$tmp/c3.yaml" "can reach the phone bank"
mutate "$compose" '/- audit-checkpoints:\/data\/checkpoints/d' >"$tmp/c4.yaml"
expect_refused "checkpoints in the container" compose "$tmp/c4.yaml" "is not on a volume"
mutate "$compose" 's/- audit-checkpoints:\/data\/checkpoints$/- audit-checkpoints:\/data\/checkpoints:ro/' >"$tmp/c5.yaml"
expect_refused "checkpoints on a read-only volume" compose "$tmp/c5.yaml" "is not on a volume"
mutate "$compose" 's/^    UPSTREAM_URL: /    UPSTREAM_ULR: /' >"$tmp/c6.yaml"
expect_refused "a misspelt variable" compose "$tmp/c6.yaml" "UPSTREAM_ULR is not a variable gateway reads"
awk '{print} /^  gateway-2:/{print "    environment:"; print "      <<: *gateway-env"; print "      TOKEN_SERVICE_URL: http://gateway-2:4000"}' "$compose" >"$tmp/c7.yaml"
expect_refused "a gateway with another issuer" compose "$tmp/c7.yaml" "the token issuer (TOKEN_SERVICE_URL) differs"
mutate "$compose" '/^      KEY_ENCRYPTION_KEY: /d' >"$tmp/c8.yaml"
expect_refused "a production secret left out" compose "$tmp/c8.yaml" "KEY_ENCRYPTION_KEY: is required when NODE_ENV=production"
mutate "$compose" 's#^  DATABASE_URL: postgres://phaselock_app:#  DATABASE_URL: postgres://phaselock:#' >"$tmp/c9.yaml"
expect_refused "services connected as the owner" compose "$tmp/c9.yaml" "must not connect as the tables' owner"
awk '/^    db-roles:$/{skip=2} skip>0{skip--;next} {print}' "$compose" >"$tmp/c10.yaml"
expect_refused "a gateway started before its role exists" compose "$tmp/c10.yaml" "must wait for db-roles"

mutate "$compose" 's/^      ADMIN_TOKEN: .*/      ADMIN_TOKEN: an-admin-token-written-into-the-compose-file/' >"$tmp/c11.yaml"
expect_refused "a secret in the file" compose "$tmp/c11.yaml" "ADMIN_TOKEN must come from the environment"
mutate "$compose" 's/\${POSTGRES_APP_PASSWORD:?set POSTGRES_APP_PASSWORD}@/hunter2@/' >"$tmp/c12.yaml"
expect_refused "a database password in the file" compose "$tmp/c12.yaml" "DATABASE_URL's password must come from"

docker="$here/Dockerfile"
mutate "$docker" '/^USER /d' >"$tmp/Dockerfile.1"
expect_refused "runs as root" dockerfile "$tmp/Dockerfile.1" "non-root USER"
mutate "$docker" 's/^ARG NODE_IMAGE=.*/ARG NODE_IMAGE=node:latest/' >"$tmp/Dockerfile.2"
expect_refused "latest base" dockerfile "$tmp/Dockerfile.2" "pinned tag"
mutate "$docker" '/^HEALTHCHECK/,/CMD \["node"/d' >"$tmp/Dockerfile.3"
expect_refused "no HEALTHCHECK" dockerfile "$tmp/Dockerfile.3" "no HEALTHCHECK"
mutate "$docker" '/^COPY services\/stack\/package.json/d' >"$tmp/Dockerfile.4"
expect_refused "a workspace manifest not copied" dockerfile "$tmp/Dockerfile.4" "services/stack/package.json is missing"
awk '/^FROM .* AS runtime/{exit} {print}' "$docker" >"$tmp/Dockerfile.5"
echo 'USER node' >>"$tmp/Dockerfile.5"
expect_refused "single stage" dockerfile "$tmp/Dockerfile.5" "not multi-stage"
mutate "$docker" 's#AUDIT_CHECKPOINT_DIR=/data/checkpoints#AUDIT_CHECKPOINT_DIR=/app/.data/checkpoints#' >"$tmp/Dockerfile.6"
expect_refused "checkpoints under the root-owned /app" dockerfile "$tmp/Dockerfile.6" "no RUN chowns it to USER node"

grafana="$here/grafana/phaselock.json"
head -c 200 "$grafana" >"$tmp/g1.json"
expect_refused "truncated JSON" grafana "$tmp/g1.json" "not JSON"
mutate "$grafana" 's/"expr": "sum by (decision, code) (rate(phaselock_gateway_decisions_total\[5m\]))"/"expr": ""/' >"$tmp/g2.json"
expect_refused "a target without expr" grafana "$tmp/g2.json" "a target has no expr"

echo "infra: ok (kustomize render of the base and $overlays overlay(s), Kubernetes and Compose schemas, services' env schemas, Dockerfile lint, Grafana dashboard; $refused broken variants refused)"
