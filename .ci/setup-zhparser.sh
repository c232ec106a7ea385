#!/usr/bin/env bash
# Builds SCWS and zhparser for Debian's PostgreSQL 15 with the image's own build script
# (docker/postgres-zhparser/build-zhparser.sh), from the pinned sources in ../shared/zhparser and a
# dictionary generated from jieba's (the jieba the project depends on), and installs them into a
# private copy of Debian's PostgreSQL 15 tree that .ci/start-zhparser.sh runs a cluster from.
#
# Why a private copy: immich-search's migrations create the zhparser extension wherever it is
# *available*, so installing it into /usr/lib/postgresql/15 would turn every other cluster of that
# installation (the stock-Immich PG15 test server among them) into a zhparser server. PostgreSQL finds
# its share and lib directories relative to its binaries, so a copied tree is a complete installation.
#
# Environment (all optional):
#   ZHPARSER_SOURCES   folder with scws-<commit>.tar.gz and zhparser-<commit>.tar.gz   default ../shared/zhparser
#   ZHPARSER_PREFIX    where the PostgreSQL copy and SCWS go           default /opt/immich-search-zhparser
#   ZHPARSER_CACHE     build cache                  default ${XDG_CACHE_HOME:-~/.cache}/immich-search-zhparser
#   ZHPARSER_DATA      the cluster .ci/start-zhparser.sh runs (stopped here before its tree is replaced)
# The build is cached under a key over its inputs (sources, jieba's dictionary, build script, this
# script, PostgreSQL's version); a run whose key matches the installed one does nothing.
# Prints nothing on stdout; progress goes to stderr.
set -Eeuo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

SOURCES="${ZHPARSER_SOURCES:-$root/../shared/zhparser}"
PREFIX="${ZHPARSER_PREFIX:-/opt/immich-search-zhparser}"
CACHE="${ZHPARSER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/immich-search-zhparser}"
PG_MAJOR=15
PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
log() { printf '[setup-zhparser] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
started=$SECONDS

[ -x "$PG_CONFIG" ] || die "no $PG_CONFIG: run .ci/setup-postgres15.sh first"
# The pinned commits are the Dockerfile's: one source of truth for the image and CI.
pin() { sed -nE "s/^ARG $1=([0-9a-f]{40})$/\1/p" docker/postgres-zhparser/Dockerfile | head -n 1; }
SCWS_COMMIT="$(pin SCWS_COMMIT)"
ZHPARSER_COMMIT="$(pin ZHPARSER_COMMIT)"
scws_tar="$SOURCES/scws-${SCWS_COMMIT:0:7}.tar.gz"
zhparser_tar="$SOURCES/zhparser-${ZHPARSER_COMMIT:0:7}.tar.gz"
[ -f "$scws_tar" ] || die "missing $scws_tar (the SCWS commit pinned in docker/postgres-zhparser/Dockerfile)"
[ -f "$zhparser_tar" ] || die "missing $zhparser_tar (the zhparser commit pinned in docker/postgres-zhparser/Dockerfile)"

# jieba's dictionary, from the project's own environment (jieba is a dependency).
make -s venv >&2
jieba_dict="$(.venv/bin/python -c 'import jieba, os; print(os.path.join(os.path.dirname(jieba.__file__), "dict.txt"))')"
[ -s "$jieba_dict" ] || die "no jieba dictionary at $jieba_dict"

key="$(
  {
    sha256sum "$scws_tar" "$zhparser_tar" "$jieba_dict" docker/postgres-zhparser/build-zhparser.sh .ci/setup-zhparser.sh | cut -d' ' -f1
    "$PG_CONFIG" --version
    dpkg-query -W -f='${Version}\n' "postgresql-$PG_MAJOR" 2>/dev/null || true
    sha256sum "/usr/lib/postgresql/$PG_MAJOR/lib/vector.so" 2>/dev/null | cut -d' ' -f1
  } | sha256sum | cut -c1-16
)"
if [ "$(cat "$PREFIX/.installed" 2>/dev/null)" = "$key" ]; then
  log "zhparser $key already installed in $PREFIX"
  exit 0
fi

stage="$CACHE/$key/stage"
if [ -f "$CACHE/$key/done" ]; then
  log "build $key from the cache $CACHE"
else
  if ! command -v autoreconf >/dev/null || ! command -v libtoolize >/dev/null || ! command -v gcc >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq autoconf automake libtool build-essential "postgresql-server-dev-$PG_MAJOR" >/dev/null
  fi
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  tar -xzf "$scws_tar" -C "$work"
  tar -xzf "$zhparser_tar" -C "$work"
  rm -rf "${CACHE:?}/$key"
  mkdir -p "$CACHE/$key"
  log "building SCWS ${SCWS_COMMIT:0:7} and zhparser ${ZHPARSER_COMMIT:0:7} for PostgreSQL $PG_MAJOR"
  PG_MAJOR="$PG_MAJOR" PG_CONFIG="$PG_CONFIG" SCWS_COMMIT="$SCWS_COMMIT" ZHPARSER_COMMIT="$ZHPARSER_COMMIT" \
    SCWS_SRC="$work/scws" ZHPARSER_SRC="$work/zhparser" JIEBA_DICT="$jieba_dict" \
    SCWS_PREFIX="$PREFIX/scws" STAGE="$stage" WORK="$work/build" \
    bash docker/postgres-zhparser/build-zhparser.sh >"$work/build.log" 2>&1 || {
    tail -n 60 "$work/build.log" >&2
    die "build failed (the last lines of its log are above)"
  }
  grep '^\[build-zhparser\]' "$work/build.log" >&2 || true
  touch "$CACHE/$key/done"
  # Older builds are of no further use.
  find "$CACHE" -mindepth 1 -maxdepth 1 -type d ! -name "$key" -exec rm -rf {} +
fi

# A zhparser cluster still running from the old tree (.ci/start-zhparser.sh of an earlier run) is stopped
# first; start-zhparser.sh starts it again on the new one.
DATA="${ZHPARSER_DATA:-/tmp/immich-search-pg15-zhparser}"
old_ctl="$PREFIX/lib/postgresql/$PG_MAJOR/bin/pg_ctl"
RUN=()
if [ "$(id -u)" = 0 ]; then RUN=(runuser -u postgres --); fi
if [ -x "$old_ctl" ] && "${RUN[@]}" "$old_ctl" -D "$DATA" status >/dev/null 2>&1; then
  log "stopping the zhparser cluster in $DATA (it runs from the tree being replaced)"
  "${RUN[@]}" "$old_ctl" -D "$DATA" stop -m fast >/dev/null
fi

# The private PostgreSQL tree: Debian's, copied, plus the staged files (their /usr/... paths mapped
# into the copy). pgvector and contrib come along with the copy.
$SUDO rm -rf "$PREFIX/lib" "$PREFIX/share" "$PREFIX/scws"
$SUDO mkdir -p "$PREFIX/lib/postgresql" "$PREFIX/share/postgresql"
$SUDO cp -a "/usr/lib/postgresql/$PG_MAJOR" "$PREFIX/lib/postgresql/"
$SUDO cp -a "/usr/share/postgresql/$PG_MAJOR" "$PREFIX/share/postgresql/"
$SUDO cp -a "$stage/usr/lib/postgresql/$PG_MAJOR/." "$PREFIX/lib/postgresql/$PG_MAJOR/"
$SUDO cp -a "$stage/usr/share/postgresql/$PG_MAJOR/." "$PREFIX/share/postgresql/$PG_MAJOR/"
$SUDO cp -a "$stage$PREFIX/scws" "$PREFIX/"
# The copy must find its own share directory, and zhparser.so its libscws.
sharedir="$("$PREFIX/lib/postgresql/$PG_MAJOR/bin/pg_config" --sharedir)"
[ "$sharedir" = "$PREFIX/share/postgresql/$PG_MAJOR" ] || die "the copied PostgreSQL reports sharedir $sharedir"
if ldd "$PREFIX/lib/postgresql/$PG_MAJOR/lib/zhparser.so" | grep -q 'not found'; then
  die "zhparser.so has unresolved libraries"
fi
echo "$key" | $SUDO tee "$PREFIX/.installed" >/dev/null
log "zhparser $key installed in $PREFIX ($((SECONDS - started)) s)"
