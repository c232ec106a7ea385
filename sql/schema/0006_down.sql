-- Revision 0006 down: the stable names go back to the v2 bodies (0003); everything 0006 added goes.
CREATE OR REPLACE FUNCTION immich_search.ocr_tsquery(query text, strict boolean DEFAULT false) RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE
RETURN immich_search.ocr_tsquery_v2(query, strict);
CREATE OR REPLACE FUNCTION immich_search.search_ocr(
  query text, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.search_ocr_v2(query, user_id, k, "offset", include_locked)
$$;
DROP FUNCTION IF EXISTS immich_search.search_ocr_v3(text, uuid, integer, integer, boolean);
DROP FUNCTION IF EXISTS immich_search.ocr_tsquery_v3(text, boolean);
DROP FUNCTION IF EXISTS immich_search.term_tsquery_v3(text, boolean, boolean);
DROP FUNCTION IF EXISTS immich_search.cjk_words_v3(text);
ALTER TABLE immich_search.ocr DROP COLUMN IF EXISTS engine;
