#!/usr/bin/env bash
# Installs Debian's PostgreSQL 15 with contrib (pg_trgm, unaccent: like Immich's database) and
# builds pgvector 0.8 from Debian's `pgvector` source package (suite trixie) against it with PGXS.
# Idempotent: does nothing when pgvector is already installed for PostgreSQL 15.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
PG_LIB=/usr/lib/postgresql/15/lib
# The Debian archive this machine already installs from (never a host named here): the first URI, and its
# keyring, of an apt source for this release's codename; deb822 *.sources first, then one-line *.list files.
# DEBIAN_MIRROR overrides the URI.
debian_archive() {
  local codename found
  # shellcheck source=/dev/null
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  found=$(awk -v cn="$codename" '
    function flush() {
      if (out == "" && types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " cn " ") && uris != "") {
        split(uris, u, " "); out = u[1] "\t" key
      }
      types = suites = uris = key = ""
    }
    FNR == 1 { flush() }
    /^[ \t]*#/ { next }
    /^[ \t]*$/ { flush(); next }
    { value = $0; sub(/^[^:]*:[ \t]*/, "", value) }
    tolower($1) == "types:" { types = value }
    tolower($1) == "suites:" { suites = value }
    tolower($1) == "uris:" { uris = value }
    tolower($1) == "signed-by:" { key = value }
    END { flush(); if (out != "") print out }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$found" ]; then
    found=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v cn="$codename" '
      $1 == "deb" { i = 2; if ($2 ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ } if ($(i + 1) == cn) { print $i "\t"; exit } }' || true)
  fi
  printf '%s\n' "$found"
}

deb_src_entry() {
  local found uri key
  found=$(debian_archive)
  uri="${DEBIAN_MIRROR:-${found%%$'\t'*}}"
  key="${found#*$'\t'}"
  [ "$key" != "$found" ] || key=""
  # A keyring file only (an inline key block does not fit the one-line field); else Debian's own keyring.
  case "$key" in /*) ;; *) key=/usr/share/keyrings/debian-archive-keyring.gpg ;; esac
  if [ -z "$uri" ]; then
    echo "no Debian archive found in /etc/apt/sources.list*: set DEBIAN_MIRROR to one" >&2
    return 1
  fi
  printf 'Types: deb-src\nURIs: %s\nSuites: trixie\nComponents: main\nSigned-By: %s\n' "$uri" "$key"
}

if [ "${1:-}" = --print-deb-src ]; then deb_src_entry; exit 0; fi

if [ -f "$PG_LIB/vector.so" ] && [ -f /usr/share/postgresql/15/extension/vector.control ]; then
  echo "pgvector for PostgreSQL 15 already installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql-15 postgresql-contrib postgresql-server-dev-15 build-essential dpkg-dev >/dev/null
if ! grep -rqs "trixie" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  entry=$(deb_src_entry)
  printf '%s\n' "$entry" | $SUDO tee /etc/apt/sources.list.d/trixie-src.sources >/dev/null
  $SUDO apt-get update -qq
fi
work=$(mktemp -d)
cd "$work"
apt-get source -qq --download-only pgvector/trixie >/dev/null 2>&1 || apt-get source -qq --download-only pgvector
dpkg-source -x --no-check ./pgvector_*.dsc src >/dev/null
cd src
make -s PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
$SUDO make -s install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
rm -rf "$work"
echo "pgvector $(grep default_version /usr/share/postgresql/15/extension/vector.control) installed for PostgreSQL 15"
