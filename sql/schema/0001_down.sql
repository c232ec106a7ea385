-- Revision 0001 down: remove everything of immich_search; Immich's public schema is not touched.
-- alembic's own version table lives in this schema too: `immich-search migrate --downgrade base`
-- drops it last, once alembic has finished.
DROP FUNCTION IF EXISTS immich_search.search_ocr(text, uuid, integer, integer, boolean);
DROP FUNCTION IF EXISTS immich_search.search_ocr_v1(text, uuid, integer, integer, boolean);
DROP FUNCTION IF EXISTS immich_search.search_ocr_tsquery_v1(tsquery, tsquery, uuid, integer, integer, boolean);
DROP FUNCTION IF EXISTS immich_search.visible_assets_v1(uuid, boolean);
DROP FUNCTION IF EXISTS immich_search.snippet_v1(text, tsquery, integer);
DROP FUNCTION IF EXISTS immich_search.ocr_tsquery_v1(text, boolean);
DROP FUNCTION IF EXISTS immich_search.term_tsquery_v1(text, boolean, boolean);
DROP FUNCTION IF EXISTS immich_search.segments_v1(text);
DROP FUNCTION IF EXISTS immich_search.word_tsquery_v1(text, boolean);
DROP FUNCTION IF EXISTS immich_search.cjk_tsquery_v1(text);
DROP FUNCTION IF EXISTS immich_search.fold_v1(text);
DROP TEXT SEARCH CONFIGURATION IF EXISTS immich_search.zh;
DO $$
BEGIN
  -- Only the zhparser we installed into our schema; one the user installed elsewhere stays.
  IF EXISTS (SELECT 1 FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
             WHERE e.extname = 'zhparser' AND n.nspname = 'immich_search') THEN
    DROP EXTENSION zhparser;
  END IF;
END
$$;
DROP TABLE IF EXISTS immich_search.sync_cursor;
DROP TABLE IF EXISTS immich_search.job;
DROP TABLE IF EXISTS immich_search.ocr;
DROP TABLE IF EXISTS immich_search.setting;
