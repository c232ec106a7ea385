-- Revision 0007 down: back to what 0006 left: 0005's search_v2, search_ocr_v3 and ocr_tsquery_v3, the stable
-- names on them; everything 0007 added goes.

-- The SQL query tokenizer on the capped query.
CREATE FUNCTION immich_search.ocr_tsquery_v3(query text, strict boolean DEFAULT false) RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE
RETURN immich_search.ocr_tsquery_v2(immich_search.capped_query_v1(query), strict);

CREATE FUNCTION immich_search.search_ocr_v3(
  query text, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
  loose_query tsquery := immich_search.ocr_tsquery_v3(query, false);
  strict_query tsquery := immich_search.ocr_tsquery_v3(query, true);
BEGIN
  RETURN QUERY SELECT * FROM immich_search.search_ocr_tsquery_v2(loose_query, strict_query, user_id, k, "offset",
                                                                include_locked);
END
$$;

CREATE FUNCTION immich_search.search_v2(
  query text, query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false, fusion text DEFAULT 'rrf', ocr_weight real DEFAULT 1,
  clip_weight real DEFAULT 1, candidates integer DEFAULT 100)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text,
               ocr_rank integer, clip_rank integer, ocr_score real, clip_score real)
LANGUAGE sql VOLATILE AS $$
  SELECT h.* FROM (SELECT immich_search.query_mode_v1(query) AS mode) AS m
  CROSS JOIN LATERAL immich_search.search_hybrid_tsquery_v2(
    CASE WHEN m.mode <> 'clip' THEN immich_search.ocr_tsquery_v3(query, false) END,
    CASE WHEN m.mode <> 'clip' THEN immich_search.ocr_tsquery_v3(query, true) END,
    CASE WHEN m.mode <> 'ocr' THEN query_vector END,
    user_id, k, "offset", include_locked, fusion, ocr_weight, clip_weight, candidates) AS h
$$;

CREATE OR REPLACE FUNCTION immich_search.ocr_tsquery(query text, strict boolean DEFAULT false) RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE
RETURN immich_search.ocr_tsquery_v3(query, strict);

CREATE OR REPLACE FUNCTION immich_search.search_ocr(
  query text, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.search_ocr_v3(query, user_id, k, "offset", include_locked)
$$;

CREATE OR REPLACE FUNCTION immich_search.search(
  query text, query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false, fusion text DEFAULT 'rrf', ocr_weight real DEFAULT 1,
  clip_weight real DEFAULT 1, candidates integer DEFAULT 100)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text,
               ocr_rank integer, clip_rank integer, ocr_score real, clip_score real)
LANGUAGE sql VOLATILE AS $$
  SELECT * FROM immich_search.search_v2(query, query_vector, user_id, k, "offset", include_locked, fusion,
                                        ocr_weight, clip_weight, candidates)
$$;

DROP FUNCTION immich_search.search_v3(text, vector, uuid, integer, integer, boolean, text, real, real, integer);
DROP FUNCTION immich_search.search_ocr_v4(text, uuid, integer, integer, boolean);
DROP FUNCTION immich_search.ocr_tsquery_v4(text, boolean);
DROP FUNCTION immich_search.term_tsquery_v3(text, boolean, boolean);
DROP FUNCTION immich_search.cjk_words_v3(text);
ALTER TABLE immich_search.ocr DROP COLUMN engine;
