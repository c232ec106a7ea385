#!/usr/bin/env bash
# Starts a throw-away PostgreSQL 15 cluster (Debian's, with contrib and pgvector from
# .ci/setup-postgres15.sh) on 127.0.0.1:${PG15_PORT:-55433} and prints its URL (55432 is the real
# Immich's own PostgreSQL in CI); PG15_BIN and PG15_DATA choose another PostgreSQL 15 installation and
# data directory (.ci/start-zhparser.sh).
# PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user.
set -euo pipefail
PORT=${PG15_PORT:-55433}
DATA=${PG15_DATA:-/tmp/immich-search-pg15}
BIN=${PG15_BIN:-/usr/lib/postgresql/15/bin}
RUN=()
if [ "$(id -u)" = 0 ]; then RUN=(runuser -u postgres --); fi
if ! "${RUN[@]}" "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  rm -rf "$DATA"
  mkdir -p "$DATA"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$DATA"; fi
  "${RUN[@]}" "$BIN/initdb" -D "$DATA" -U postgres -E UTF8 --locale=C.UTF-8 --auth=trust >/dev/null
  "${RUN[@]}" "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
    -o "-p $PORT -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
fi
echo "postgresql://postgres@127.0.0.1:$PORT/postgres"
