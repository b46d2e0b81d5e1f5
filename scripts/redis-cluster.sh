#!/usr/bin/env bash
# Starts a three-node Redis Cluster (three masters, no replicas) on 127.0.0.1 for the tests, or
# does nothing when it is already up. Prints the REDIS_URL that names it on stdout.
#
#   scripts/redis-cluster.sh          start (idempotent), print redis+cluster://127.0.0.1:7101,...
#   scripts/redis-cluster.sh stop     shut the nodes down and remove their files
#
# Ports: REDIS_CLUSTER_PORTS (default "7101 7102 7103"). Files: REDIS_CLUSTER_DIR (default
# /tmp/phaselock-redis-cluster). Nothing is persisted (`--save "" --appendonly no`): the cluster is
# for tests. cluster-node-timeout is 2 s so a stopped node is noticed quickly.
set -euo pipefail

ports=(${REDIS_CLUSTER_PORTS:-7101 7102 7103})
dir=${REDIS_CLUSTER_DIR:-/tmp/phaselock-redis-cluster}
url="redis+cluster://$(printf '127.0.0.1:%s,' "${ports[@]}" | sed 's/,$//')"

cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
state() { cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_state://p'; }
known() { cli "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_known_nodes://p'; }

if [ "${1:-start}" = "stop" ]; then
  for p in "${ports[@]}"; do cli "$p" shutdown nosave >/dev/null 2>&1 || true; done
  rm -rf "$dir"
  exit 0
fi

not_cluster() {
  echo "redis cluster: 127.0.0.1:$1 is a Redis without cluster support; free the port or set REDIS_CLUSTER_PORTS" >&2
  exit 1
}
for p in "${ports[@]}"; do
  if cli "$p" ping >/dev/null 2>&1; then
    cli "$p" cluster info 2>/dev/null | grep -q '^cluster_state:' || not_cluster "$p"
  fi
done

mkdir -p "$dir"
for p in "${ports[@]}"; do
  if ! cli "$p" ping >/dev/null 2>&1; then
    mkdir -p "$dir/$p"
    redis-server --port "$p" --bind 127.0.0.1 --daemonize yes \
      --cluster-enabled yes --cluster-config-file "$dir/$p/nodes.conf" --cluster-node-timeout 2000 \
      --dir "$dir/$p" --logfile "$dir/$p/redis.log" --pidfile "$dir/$p/redis.pid" \
      --save "" --appendonly no >/dev/null
  fi
done
for p in "${ports[@]}"; do
  for _ in $(seq 1 50); do cli "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
  cli "$p" ping >/dev/null 2>&1 || {
    echo "redis cluster: nothing answers PING on 127.0.0.1:$p (see $dir/$p/redis.log)" >&2
    exit 1
  }
  cli "$p" cluster info 2>/dev/null | grep -q '^cluster_state:' || not_cluster "$p"
done

# Create the cluster unless every node already knows the others (a node restarted with its
# nodes.conf rejoins by itself).
if [ "$(known "${ports[0]}")" != "${#ports[@]}" ]; then
  redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") --cluster-replicas 0 --cluster-yes >&2
fi
for _ in $(seq 1 100); do
  ok=1
  for p in "${ports[@]}"; do [ "$(state "$p")" = ok ] || ok=; done
  [ -n "$ok" ] && break
  sleep 0.1
done
for p in "${ports[@]}"; do
  [ "$(state "$p")" = ok ] || { echo "redis cluster: node $p reports cluster_state:$(state "$p")" >&2; exit 1; }
done
echo "$url"
