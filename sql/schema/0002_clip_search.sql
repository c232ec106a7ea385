-- Schema immich_search, revision 0002: Chinese-CLIP vectors and hybrid ranking (issue 3).

-- The stable name of the OCR branch for callers with ready-made tsqueries (the Python path and the
-- hybrid ranking); a later revision repoints it at a newer version with the same signature.
CREATE FUNCTION immich_search.search_ocr_tsquery(
  loose tsquery, strict tsquery, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.search_ocr_tsquery_v1(loose, strict, user_id, k, "offset", include_locked)
$$;
