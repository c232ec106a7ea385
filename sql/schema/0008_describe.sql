-- Schema immich_search, revision 0008: photo descriptions from a vision LLM (issue 18), a third task of the
-- sync queue. Nothing here touches Immich's tables: descriptions written into Immich go through its API.

-- The queue knows a third task.
ALTER TABLE immich_search.job DROP CONSTRAINT job_task_check;
ALTER TABLE immich_search.job ADD CONSTRAINT job_task_check CHECK (task IN ('ocr', 'clip', 'describe'));

-- One description per asset: what the vision model said of its current preview, which model and which host
-- answered and when, folded and tokenised like OCR text (search_vector, tokenizer_version as immich_search.ocr).
CREATE TABLE immich_search.description (
  asset_id uuid PRIMARY KEY REFERENCES public.asset (id) ON DELETE CASCADE,
  text text NOT NULL,
  model text NOT NULL,
  host text NOT NULL,
  search_vector tsvector NOT NULL,
  tokenizer_version integer NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX description_search_vector_idx ON immich_search.description USING gin (search_vector);

-- requeue_v1 with the describe task: tasks 'ocr', 'clip' and/or 'describe'; NULL means 'ocr', plus 'clip'
-- when a CLIP model is configured, plus 'describe' when a sync has described photos (setting
-- 'describe_model'). Otherwise as requeue_v1: queued at the head of the queue, a running job loses its
-- lease, assets that do not exist are skipped, an unknown task raises. Returns the number of jobs queued.
CREATE FUNCTION immich_search.requeue_v2(asset_ids uuid[], tasks text[] DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  wanted text[] := coalesce(tasks, ARRAY['ocr']
    || CASE WHEN EXISTS (SELECT 1 FROM immich_search.setting WHERE key = 'clip_model')
            THEN ARRAY['clip'] ELSE ARRAY[]::text[] END
    || CASE WHEN EXISTS (SELECT 1 FROM immich_search.setting WHERE key = 'describe_model')
            THEN ARRAY['describe'] ELSE ARRAY[]::text[] END);
  bad text;
  queued integer;
BEGIN
  SELECT t INTO bad FROM unnest(wanted) AS t WHERE t IS NULL OR t NOT IN ('ocr', 'clip', 'describe') LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'requeue_v2: unknown task %, expected ocr, clip or describe', coalesce(quote_literal(bad), 'NULL');
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

-- The stable name follows the newest version (same signature: psql users' calls keep working).
CREATE OR REPLACE FUNCTION immich_search.requeue(asset_ids uuid[], tasks text[] DEFAULT NULL) RETURNS integer
LANGUAGE sql AS $$ SELECT immich_search.requeue_v2(asset_ids, tasks) $$;

-- Nothing calls requeue_v1 any more (rule 5 of sql/README.md); 0008_down.sql brings it back.
DROP FUNCTION immich_search.requeue_v1(uuid[], text[]);
