#!/bin/sh
# Runs one service in the foreground as PID 1's direct replacement (exec), so SIGTERM from the
# runtime reaches Node itself and the service can drain before it exits.
set -eu
service="${1:-${SERVICE:-gateway}}"
# What follows the service's name goes to it (`migrate --check --wait 600`).
if [ "$#" -gt 0 ]; then shift; fi
case "$service" in
  gateway | token-service | phonebank) entry="services/$service/dist/main.mjs" ;;
  migrate) entry="packages/db/dist/migrate.mjs" ;;
  *)
    echo "usage: entrypoint.sh gateway|token-service|phonebank|migrate (got '$service')" >&2
    exit 64
    ;;
esac
export SERVICE="$service"
# The bundles `node scripts/build.ts` made when the image was built (infra/Dockerfile), with the
# flags of NODE_FLAGS in scripts/build.ts (why: there).
exec node --max-semi-space-size=16 "/app/$entry" "$@"
