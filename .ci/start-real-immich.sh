#!/usr/bin/env bash
# Builds (or reuses a finished build of), starts and seeds Immich v3.1's own server from
# ../shared/real-immich, then prints the KEY=value lines the real_immich tests read
# (REAL_IMMICH_URL, REAL_IMMICH_DB_URL, REAL_IMMICH_MEDIA_LOCATION, API keys, user ids).
# A server that already runs is reused as it is (start.sh and seed.sh are idempotent); the build lives
# under $REAL_IMMICH_DIR (default ~/.cache/immich-search-real-immich), so a second run skips it.
# Progress and timings go to stderr; stdout holds only the variables.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
scripts="${REAL_IMMICH_SCRIPTS:-$here/../../shared/real-immich}"
if [ ! -x "$scripts/start.sh" ]; then
  echo "start-real-immich: no real-immich scripts at $scripts (set REAL_IMMICH_SCRIPTS)" >&2
  exit 1
fi
t0=$(date +%s)
bash "$scripts/start.sh" --seed >&2
echo "start-real-immich: Immich built/started and seeded in $(( $(date +%s) - t0 )) s" >&2
bash "$scripts/psql.sh" --env
