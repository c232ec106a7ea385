#!/usr/bin/env bash
# Builds (or reuses a finished build of), starts and seeds Immich v3.1's own server from
# ../shared/real-immich, then prints the KEY=value lines the real_immich tests read
# (REAL_IMMICH_URL, REAL_IMMICH_DB_URL, REAL_IMMICH_MEDIA_LOCATION, API keys, user ids).
# The instance is the one REAL_IMMICH_DIR / REAL_IMMICH_PORT / REAL_IMMICH_PG_PORT / REAL_IMMICH_REDIS_PORT
# name (defaults: ~/.cache/immich-search-real-immich, 2283, 55432, 56379). A server that already runs is
# reused as it is (start.sh and seed.sh are idempotent); the build lives under $REAL_IMMICH_DIR, so a
# second run skips it.
#   --build-from DIR   copy the finished build (src/, tools/, build/) of the instance at DIR first, so a
#                      second instance starts without building Immich again
#   --fresh            wipe this instance's data first (the build is kept)
# Progress and timings go to stderr; stdout holds only the variables.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
scripts="${REAL_IMMICH_SCRIPTS:-$here/../../shared/real-immich}"
build_from="" fresh=()
while [ $# -gt 0 ]; do
  case "$1" in
    --build-from) build_from="$2"; shift 2 ;;
    --fresh) fresh=(--fresh); shift ;;
    *) echo "usage: start-real-immich.sh [--build-from DIR] [--fresh]" >&2; exit 2 ;;
  esac
done
if [ ! -x "$scripts/start.sh" ]; then
  echo "start-real-immich: no real-immich scripts at $scripts (set REAL_IMMICH_SCRIPTS)" >&2
  exit 1
fi
t0=$(date +%s)
dir="${REAL_IMMICH_DIR:-$HOME/.cache/immich-search-real-immich}"
if [ -n "$build_from" ] && [ ! -f "$dir/src/.tarball-sha256" ] && [ -f "$build_from/src/.tarball-sha256" ]; then
  mkdir -p "$dir"
  cp -a "$build_from/src" "$build_from/tools" "$build_from/build" "$dir/"
  echo "start-real-immich: build copied from $build_from in $(( $(date +%s) - t0 )) s" >&2
fi
for attempt in 1 2 3; do
  if bash "$scripts/start.sh" "${fresh[@]}" --seed >&2; then break; fi
  [ "$attempt" = 3 ] && exit 1
  # Our ports lie in Linux's ephemeral range, so another program's outgoing connection can hold one for a
  # moment ("Address already in use" with nothing listening): stop what started, wait, try again.
  echo "start-real-immich: start failed (attempt $attempt), trying again in 5 s" >&2
  bash "$scripts/stop.sh" >&2 || true
  sleep 5
done
echo "start-real-immich: Immich at $dir built/started and seeded in $(( $(date +%s) - t0 )) s" >&2
bash "$scripts/psql.sh" --env
