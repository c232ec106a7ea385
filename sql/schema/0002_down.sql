-- Revision 0002 down: the CLIP table, its functions and the stable names added by 0002.
DROP FUNCTION IF EXISTS immich_search.search(text, vector, uuid, integer, integer, boolean, text, real, real, integer);
DROP FUNCTION IF EXISTS immich_search.search_v1(text, vector, uuid, integer, integer, boolean, text, real, real, integer);
DROP FUNCTION IF EXISTS immich_search.query_mode_v1(text);
DROP FUNCTION IF EXISTS immich_search.search_hybrid_tsquery_v1(tsquery, tsquery, vector, uuid, integer, integer, boolean, text, real, real, integer, integer);
DROP FUNCTION IF EXISTS immich_search.search_clip(vector, uuid, integer, integer, boolean);
DROP FUNCTION IF EXISTS immich_search.search_clip_v1(vector, uuid, integer, integer, boolean, integer);
DROP FUNCTION IF EXISTS immich_search.pgvector_iterative_scan_v1();
DROP FUNCTION IF EXISTS immich_search.clip_configure_v1(text, integer);
DROP FUNCTION IF EXISTS immich_search.clip_create_index_v1();
DROP TABLE IF EXISTS immich_search.clip;
DELETE FROM immich_search.setting WHERE key = 'clip_model';
DROP FUNCTION IF EXISTS immich_search.snippet(text, tsquery, integer);
DROP FUNCTION IF EXISTS immich_search.ocr_candidates(tsquery, tsquery, uuid, integer, boolean);
DROP FUNCTION IF EXISTS immich_search.ocr_candidates_v1(tsquery, tsquery, uuid, integer, boolean);
DROP FUNCTION IF EXISTS immich_search.ocr_tsquery(text, boolean);
DROP FUNCTION IF EXISTS immich_search.search_ocr_tsquery(tsquery, tsquery, uuid, integer, integer, boolean);
