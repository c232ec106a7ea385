-- Undo revision 0008: descriptions and the describe task go; requeue_v1, search_v3 and query_mode_v1 come back.
CREATE FUNCTION immich_search.query_mode_v1(query text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(lower(substring(normalize(coalesce(query, ''), NFKC)
                                from '^[ \t\n\r\f\v]*([Oo][Cc][Rr]|[Cc][Ll][Ii][Pp])[ \t\n\r\f\v]*:')),
                'hybrid');

-- search_v2 with ocr_tsquery_v4: the hybrid search from psql, its text branch as `ocr:` reads it.
CREATE FUNCTION immich_search.search_v3(
  query text, query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false, fusion text DEFAULT 'rrf', ocr_weight real DEFAULT 1,
  clip_weight real DEFAULT 1, candidates integer DEFAULT 100)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text,
               ocr_rank integer, clip_rank integer, ocr_score real, clip_score real)
LANGUAGE sql VOLATILE AS $$
  SELECT h.* FROM (SELECT immich_search.query_mode_v1(query) AS mode) AS m
  CROSS JOIN LATERAL immich_search.search_hybrid_tsquery_v2(
    CASE WHEN m.mode <> 'clip' THEN immich_search.ocr_tsquery_v4(query, false) END,
    CASE WHEN m.mode <> 'clip' THEN immich_search.ocr_tsquery_v4(query, true) END,
    CASE WHEN m.mode <> 'ocr' THEN query_vector END,
    user_id, k, "offset", include_locked, fusion, ocr_weight, clip_weight, candidates) AS h
$$;

CREATE OR REPLACE FUNCTION immich_search.search(
  query text, query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false, fusion text DEFAULT 'rrf', ocr_weight real DEFAULT 1,
  clip_weight real DEFAULT 1, candidates integer DEFAULT 100)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text,
               ocr_rank integer, clip_rank integer, ocr_score real, clip_score real)
LANGUAGE sql VOLATILE AS $$
  SELECT * FROM immich_search.search_v3(query, query_vector, user_id, k, "offset", include_locked, fusion,
                                        ocr_weight, clip_weight, candidates)
$$;
DROP FUNCTION immich_search.search_v4(text, vector, uuid, integer, integer, boolean, text, real, real, integer);
DROP FUNCTION immich_search.query_mode_v2(text);
DELETE FROM immich_search.job WHERE task = 'describe';
DELETE FROM immich_search.sync_cursor WHERE name LIKE 'describe:%';
DELETE FROM immich_search.setting WHERE key = 'describe_model';
DROP FUNCTION immich_search.search_hybrid_tsquery_v3(tsquery, tsquery, vector, uuid, integer, integer, boolean, text, real, real, integer, integer);
DROP FUNCTION immich_search.search_text_tsquery_v1(tsquery, tsquery, uuid, integer, integer, boolean, boolean, boolean);
DROP FUNCTION immich_search.text_snippet_v1(text, tsquery, text, tsquery);
DROP FUNCTION immich_search.text_candidates_v1(tsquery, tsquery, uuid, integer, boolean, boolean, boolean);
DROP FUNCTION immich_search.description_candidates_v1(tsquery, tsquery, uuid, integer, boolean);
DROP TABLE immich_search.description;
CREATE FUNCTION immich_search.requeue_v1(asset_ids uuid[], tasks text[] DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  wanted text[] := coalesce(tasks, CASE
    WHEN EXISTS (SELECT 1 FROM immich_search.setting WHERE key = 'clip_model') THEN ARRAY['ocr', 'clip']
    ELSE ARRAY['ocr'] END);
  bad text;
  queued integer;
BEGIN
  SELECT t INTO bad FROM unnest(wanted) AS t WHERE t IS NULL OR t NOT IN ('ocr', 'clip') LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'requeue_v1: unknown task %, expected ocr or clip', coalesce(quote_literal(bad), 'NULL');
  END IF;
  INSERT INTO immich_search.job AS j (asset_id, task, preview_update_id, run_after)
  SELECT a.id, t.task, f."updateId", '-infinity'
  FROM public.asset a
  CROSS JOIN (SELECT DISTINCT unnest(wanted) AS task) AS t
  LEFT JOIN public.asset_file f ON f."assetId" = a.id AND f.type = 'preview' AND f."isEdited" = false
  WHERE a.id = ANY(asset_ids)
  ON CONFLICT (asset_id, task) DO UPDATE
  SET state = 'pending', attempts = 0, run_after = '-infinity', last_error = NULL, lease_owner = NULL,
      lease_expires_at = NULL, preview_update_id = excluded.preview_update_id, updated_at = now();
  GET DIAGNOSTICS queued = ROW_COUNT;
  RETURN queued;
END
$$;

CREATE OR REPLACE FUNCTION immich_search.requeue(asset_ids uuid[], tasks text[] DEFAULT NULL) RETURNS integer
LANGUAGE sql AS $$ SELECT immich_search.requeue_v1(asset_ids, tasks) $$;
DROP FUNCTION immich_search.requeue_v2(uuid[], text[]);
ALTER TABLE immich_search.job DROP CONSTRAINT job_task_check;
ALTER TABLE immich_search.job ADD CONSTRAINT job_task_check CHECK (task IN ('ocr', 'clip'));
