#!/usr/bin/env bash
# Builds SCWS and zhparser against one PostgreSQL major and stages what the final image needs.
#
# Run by the builder stage of ./Dockerfile; it runs the same way outside Docker (that is how it was
# tested: against Debian's PostgreSQL 15, see README.md).
#
# Inputs (environment):
#   PG_MAJOR          PostgreSQL major version (the official postgres images set it).     required
#   PG_CONFIG         pg_config of that major.            default /usr/lib/postgresql/$PG_MAJOR/bin/pg_config
#   SCWS_COMMIT       full 40-hex commit of SCWS to build.                                  required
#   ZHPARSER_COMMIT   full 40-hex commit of zhparser to build.                              required
#   SCWS_REPO         default https://github.com/hightman/scws.git
#   ZHPARSER_REPO     default https://github.com/amutu/zhparser.git
#   SCWS_SRC          an existing SCWS source directory to use instead of fetching (offline tests)
#   ZHPARSER_SRC      an existing zhparser source directory to use instead of fetching (offline tests)
#   SCWS_PREFIX       where libscws is installed, also zhparser.so's rpath.      default /usr/local
#   STAGE             staging root copied into the final image as-is.            default /out
#   WORK              scratch directory.                                          default /tmp/zhparser-build
#
# Output: $STAGE holds, with their final absolute paths below it, zhparser.so (+ LLVM bitcode when the
# server was built with LLVM), zhparser.control and its SQL scripts, the dictionary dict.utf8.xdb and
# rules.utf8.ini (tsearch_data), and $SCWS_PREFIX/lib/libscws.so*. Nothing else.
set -Eeuo pipefail

: "${PG_MAJOR:?PG_MAJOR must be set}"
: "${SCWS_COMMIT:?SCWS_COMMIT must be set}"
: "${ZHPARSER_COMMIT:?ZHPARSER_COMMIT must be set}"
PG_CONFIG="${PG_CONFIG:-/usr/lib/postgresql/${PG_MAJOR}/bin/pg_config}"
SCWS_REPO="${SCWS_REPO:-https://github.com/hightman/scws.git}"
ZHPARSER_REPO="${ZHPARSER_REPO:-https://github.com/amutu/zhparser.git}"
SCWS_PREFIX="${SCWS_PREFIX:-/usr/local}"
STAGE="${STAGE:-/out}"
WORK="${WORK:-/tmp/zhparser-build}"
JOBS="$(nproc 2>/dev/null || echo 2)"

log() { printf '[build-zhparser] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Fetches exactly one commit. Git names objects by their SHA-1, and the commit is compared after the
# checkout, so the sources cannot differ from the pinned ones without the build failing.
fetch_commit() {
  local repo="$1" commit="$2" dest="$3" actual
  [[ "$commit" =~ ^[0-9a-f]{40}$ ]] || die "commit must be 40 lower-case hex digits, got '$commit'"
  rm -rf "$dest"
  git init -q "$dest"
  git -C "$dest" remote add origin "$repo"
  git -C "$dest" fetch -q --depth 1 origin "$commit"
  git -C "$dest" -c advice.detachedHead=false checkout -q --detach FETCH_HEAD
  actual="$(git -C "$dest" rev-parse HEAD)"
  [[ "$actual" == "$commit" ]] || die "$repo: fetched $actual, expected $commit"
  log "$repo at $actual"
}

[[ -x "$PG_CONFIG" ]] || die "no pg_config at $PG_CONFIG (install postgresql-server-dev-$PG_MAJOR)"
server_major="$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')"
[[ "$server_major" == "$PG_MAJOR" ]] || die "pg_config is PostgreSQL $server_major, PG_MAJOR is $PG_MAJOR"

mkdir -p "$WORK" "$STAGE"

# --- SCWS ----------------------------------------------------------------------------------------
if [[ -n "${SCWS_SRC:-}" ]]; then
  log "SCWS from $SCWS_SRC (not fetched)"
  rm -rf "$WORK/scws" && cp -a "$SCWS_SRC" "$WORK/scws"
else
  fetch_commit "$SCWS_REPO" "$SCWS_COMMIT" "$WORK/scws"
fi
(
  cd "$WORK/scws"
  # The git tree carries no generated files; automake (gnu strictness) wants a README, which the
  # repository ignores, so an empty one is enough.
  touch README
  autoreconf --force --install
  ./configure --quiet --prefix="$SCWS_PREFIX" --disable-static
  make -s -j"$JOBS"
  make -s install
)
mkdir -p "$STAGE$SCWS_PREFIX/lib"
cp -a "$SCWS_PREFIX"/lib/libscws.so* "$STAGE$SCWS_PREFIX/lib/"

# --- zhparser ------------------------------------------------------------------------------------
if [[ -n "${ZHPARSER_SRC:-}" ]]; then
  log "zhparser from $ZHPARSER_SRC (not fetched)"
  rm -rf "$WORK/zhparser" && cp -a "$ZHPARSER_SRC" "$WORK/zhparser"
else
  fetch_commit "$ZHPARSER_REPO" "$ZHPARSER_COMMIT" "$WORK/zhparser"
fi
# SCWS_HOME given explicitly: zhparser's Makefile then takes -I$SCWS_HOME/include/scws and links
# -lscws with an rpath to $SCWS_HOME/lib (it only falls back to pkg-config when SCWS_HOME is unset).
make -s -C "$WORK/zhparser" -j"$JOBS" PG_CONFIG="$PG_CONFIG" SCWS_HOME="$SCWS_PREFIX"
make -s -C "$WORK/zhparser" install PG_CONFIG="$PG_CONFIG" SCWS_HOME="$SCWS_PREFIX" DESTDIR="$STAGE"

# --- checks --------------------------------------------------------------------------------------
pkglibdir="$("$PG_CONFIG" --pkglibdir)"
sharedir="$("$PG_CONFIG" --sharedir)"
for f in "$pkglibdir/zhparser.so" "$sharedir/extension/zhparser.control" \
         "$sharedir/tsearch_data/dict.utf8.xdb" "$sharedir/tsearch_data/rules.utf8.ini"; do
  [[ -s "$STAGE$f" ]] || die "missing after install: $f"
done
if LD_LIBRARY_PATH="$STAGE$SCWS_PREFIX/lib" ldd "$STAGE$pkglibdir/zhparser.so" | grep -q 'not found'; then
  ldd "$STAGE$pkglibdir/zhparser.so" >&2
  die "zhparser.so has unresolved libraries"
fi
log "zhparser $(sed -nE "s/^default_version *= *'([^']+)'.*/\1/p" "$STAGE$sharedir/extension/zhparser.control") for PostgreSQL $PG_MAJOR staged in $STAGE:"
(cd "$STAGE" && find . -type f -o -type l | sort | sed 's/^\./  /' >&2)
