#!/usr/bin/env bash
# Installed as /docker-entrypoint-initdb.d/50-zhparser.sh. The postgres entrypoint runs it once, when
# it initialises an EMPTY data directory (a new Immich install), with the server listening on its
# Unix socket only. An existing database never runs it: see README.md ("Existing databases") for the
# one-line equivalent.
#
# What it does, idempotently:
#   1. CREATE EXTENSION zhparser in template1 (databases created later get it) and in Immich's
#      database (POSTGRES_DB, which Immich's image derives from DB_DATABASE_NAME; default immich).
#   2. In Immich's database only, a convenience text search configuration public.immich_search_zh
#      (parser zhparser, every token type except punctuation mapped to `simple`). immich-search's
#      own migrations do not depend on it: they create their configuration in schema immich_search
#      whenever the zhparser extension is present.
set -Eeuo pipefail

db="${POSTGRES_DB:-${DB_DATABASE_NAME:-immich}}"
user="${POSTGRES_USER:-${DB_USERNAME:-postgres}}"

psql_in() {
  local database="$1"
  shift
  PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" \
    psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$user" --dbname "$database" "$@"
}

for database in template1 "$db"; do
  echo "zhparser: CREATE EXTENSION in database \"$database\""
  psql_in "$database" --quiet --command 'CREATE EXTENSION IF NOT EXISTS zhparser SCHEMA public;'
done

# Token types of zhparser (SCWS part-of-speech tags, first letter). Mapped: all but w (punctuation).
# Why so wide: OCR text is searched for what it says, so function words (c, p, r, u, y ...) are kept
# like content words; SCWS types ASCII words and numbers as e ("en"), characters missing from its
# dictionary as u ("un"), and custom-dictionary words as x: dropping those types would drop them from
# the index. The mapping table and its reasons are in README.md.
echo "zhparser: text search configuration public.immich_search_zh in database \"$db\""
psql_in "$db" --quiet <<'SQL'
DO $$
BEGIN
  IF NOT EXISTS (
    SELECT 1
    FROM pg_catalog.pg_ts_config c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.cfgnamespace
    WHERE n.nspname = 'public' AND c.cfgname = 'immich_search_zh'
  ) THEN
    CREATE TEXT SEARCH CONFIGURATION public.immich_search_zh (PARSER = public.zhparser);
    ALTER TEXT SEARCH CONFIGURATION public.immich_search_zh
      ADD MAPPING FOR a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r, s, t, u, v, x, y, z
      WITH simple;
    COMMENT ON TEXT SEARCH CONFIGURATION public.immich_search_zh IS
      'zhparser (SCWS) segmentation, all token types but punctuation (w) mapped to simple; created by the immich-search zhparser image';
  END IF;
END
$$;
SQL
