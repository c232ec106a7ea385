#!/usr/bin/env bash
# Installs Debian's PostgreSQL 15 with contrib (pg_trgm, unaccent: like Immich's database) and
# builds pgvector 0.8 from Debian's `pgvector` source package (suite trixie) against it with PGXS.
# Idempotent: does nothing when pgvector is already installed for PostgreSQL 15.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
PG_LIB=/usr/lib/postgresql/15/lib
if [ -f "$PG_LIB/vector.so" ] && [ -f /usr/share/postgresql/15/extension/vector.control ]; then
  echo "pgvector for PostgreSQL 15 already installed"
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql-15 postgresql-contrib postgresql-server-dev-15 build-essential dpkg-dev >/dev/null
if ! grep -rqs "trixie" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  cat <<'SRC' | $SUDO tee /etc/apt/sources.list.d/trixie-src.sources >/dev/null
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
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
