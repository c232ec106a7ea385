#!/usr/bin/env bash
# Starts the zhparser test cluster: the PostgreSQL 15 copy that .ci/setup-zhparser.sh installed (Debian's
# PostgreSQL 15 + contrib + pgvector + zhparser with a jieba-derived dictionary) on
# 127.0.0.1:${ZHPARSER_PORT:-55434}, data in ${ZHPARSER_DATA:-/tmp/immich-search-pg15-zhparser}, and
# prints its URL (for IMMICH_SEARCH_TEST_ZHPARSER_URL). A cluster already running there is reused.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX="${ZHPARSER_PREFIX:-/opt/immich-search-zhparser}"
[ -f "$PREFIX/lib/postgresql/15/lib/zhparser.so" ] || { echo "no zhparser in $PREFIX: run .ci/setup-zhparser.sh" >&2; exit 1; }
PG15_BIN="$PREFIX/lib/postgresql/15/bin" PG15_PORT="${ZHPARSER_PORT:-55434}" \
  PG15_DATA="${ZHPARSER_DATA:-/tmp/immich-search-pg15-zhparser}" bash "$here/start-postgres15.sh"
