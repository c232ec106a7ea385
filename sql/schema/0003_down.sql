-- Revision 0003 down: the stable names go back to the v1 bodies (0001, 0002); everything 0003 added goes.
CREATE OR REPLACE FUNCTION immich_search.search_ocr(
  query text, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.search_ocr_v1(query, user_id, k, "offset", include_locked)
$$;
CREATE OR REPLACE FUNCTION immich_search.search_ocr_tsquery(
  loose tsquery, strict tsquery, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.search_ocr_tsquery_v1(loose, strict, user_id, k, "offset", include_locked)
$$;
CREATE OR REPLACE FUNCTION immich_search.ocr_tsquery(query text, strict boolean DEFAULT false) RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE
RETURN immich_search.ocr_tsquery_v1(query, strict);
CREATE OR REPLACE FUNCTION immich_search.snippet(body text, query tsquery, max_lines integer DEFAULT 3) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN immich_search.snippet_v1(body, query, max_lines);
DROP FUNCTION IF EXISTS immich_search.search_ocr_v2(text, uuid, integer, integer, boolean);
CREATE OR REPLACE FUNCTION immich_search.ocr_candidates(
  loose tsquery, strict tsquery, user_id uuid, k integer DEFAULT 100, include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.ocr_candidates_v1(loose, strict, user_id, k, include_locked)
$$;
DROP FUNCTION IF EXISTS immich_search.search_ocr_tsquery_v2(tsquery, tsquery, uuid, integer, integer, boolean);
DROP FUNCTION IF EXISTS immich_search.ocr_candidates_v2(tsquery, tsquery, uuid, integer, boolean);
DROP FUNCTION IF EXISTS immich_search.can_see_v2(uuid, text, timestamptz, uuid, uuid[], boolean);
DROP FUNCTION IF EXISTS immich_search.snippet_v2(text, tsquery, integer);
DROP FUNCTION IF EXISTS immich_search.fuzzy_tsquery_v2(tsquery);
DROP FUNCTION IF EXISTS immich_search.cjk_fuzzy_v2(text);
DROP FUNCTION IF EXISTS immich_search.fuzzy_terms_v2(text);
DROP FUNCTION IF EXISTS immich_search.fuzzy_keys_v2(text);
DROP FUNCTION IF EXISTS immich_search.ocr_tsquery_v2(text, boolean);
DROP FUNCTION IF EXISTS immich_search.term_tsquery_v2(text, boolean, boolean);
DROP FUNCTION IF EXISTS immich_search.segments_v2(text);
DROP FUNCTION IF EXISTS immich_search.word_tsquery_v2(text, boolean);
DROP FUNCTION IF EXISTS immich_search.cjk_tsquery_v2(text);
DROP FUNCTION IF EXISTS immich_search.cjk_words_v2(text);
DROP FUNCTION IF EXISTS immich_search.jieba_cut_v2(text);
DROP TABLE IF EXISTS immich_search.cjk_word;
DROP FUNCTION IF EXISTS immich_search.fold_v2(text);
DROP TABLE IF EXISTS immich_search.fold_char;
DROP INDEX IF EXISTS immich_search.ocr_tokenizer_version_idx;
DELETE FROM immich_search.setting WHERE key IN ('cjk_dictionary_total', 'cjk_dictionary_max_length');
