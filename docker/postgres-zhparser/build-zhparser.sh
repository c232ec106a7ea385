#!/usr/bin/env bash
# Builds SCWS and zhparser against one PostgreSQL major and stages what the final image needs.
#
# Run by the builder stage of ./Dockerfile, and by the repository's CI (.ci/setup-zhparser.sh) against
# Debian's PostgreSQL 15, so the image's build path is the one the test suite runs on.
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
#   JIEBA_DICT        jieba's dictionary (jieba/dict.txt, lines `word freq pos`): when set, the SCWS
#                     dictionary dict.utf8.xdb is generated from it with scws-gen-dict instead of taking
#                     the one zhparser's repository carries (a source tree without one needs this).
#   SCWS_PREFIX       where libscws is installed, also zhparser.so's rpath.      default /usr/local
#   STAGE             staging root copied into the final image as-is.            default /out
#   WORK              scratch directory.                                          default /tmp/zhparser-build
#
# Output: $STAGE holds, with their final absolute paths below it, zhparser.so (+ LLVM bitcode when the
# server was built with LLVM), zhparser.control and its SQL scripts, the dictionary dict.utf8.xdb and
# rules.utf8.ini (tsearch_data), and $SCWS_PREFIX/lib/libscws.so*. Nothing else. SCWS itself (with
# its command line tools scws and scws-gen-dict) is installed into $SCWS_PREFIX of the machine that runs
# this script, as zhparser links against it.
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
# --- dictionary ----------------------------------------------------------------------------------
# zhparser installs dict.utf8.xdb from its source tree (Makefile DATA_TSEARCH). With JIEBA_DICT, that
# file is generated here: jieba's `word freq pos` lines become SCWS's text dictionary `word TF IDF attr`
# (scws/README.md), then scws-gen-dict builds the xdb.
#   TF  = 1 + ln(freq): SCWS scores a segmentation path by the product of its words' TF (times
#         length^4), and gives characters missing from the dictionary TF 0.5 (libscws/scws.c); the log
#         turns jieba's counts (1 to ~900,000) into 1 to ~15, the order of SCWS's documented example
#         (`新词条 12.0 2.2 n`, scws/README.md), with every known word above an unknown character.
#   IDF = ln(total / freq), the word's information content: SCWS uses it only for keyword ranking.
#   attr = jieba's part-of-speech tag (ICTCLAS/PKU tags, as SCWS uses), first two letters (SCWS keeps
#         two): `eng` becomes SCWS's own `en`.
if [[ -n "${JIEBA_DICT:-}" ]]; then
  [[ -s "$JIEBA_DICT" ]] || die "JIEBA_DICT=$JIEBA_DICT is missing or empty"
  awk 'NR == FNR { if ($2 + 0 > 0) total += $2; next }
       $1 != "" && $2 + 0 > 0 {
         attr = ($3 == "") ? "x" : substr($3, 1, 2)
         printf "%s\t%.4f\t%.4f\t%s\n", $1, 1 + log($2), log(total / $2), attr
       }' "$JIEBA_DICT" "$JIEBA_DICT" >"$WORK/dict.scws.txt"
  rm -f "$WORK/zhparser/dict.utf8.xdb"
  "$SCWS_PREFIX/bin/scws-gen-dict" -c utf8 -i "$WORK/dict.scws.txt" -o "$WORK/zhparser/dict.utf8.xdb" >/dev/null
  log "dictionary dict.utf8.xdb generated from $JIEBA_DICT ($(wc -l <"$WORK/dict.scws.txt") words)"
fi
[[ -s "$WORK/zhparser/dict.utf8.xdb" ]] || die "no dict.utf8.xdb in zhparser's source tree: set JIEBA_DICT"

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
