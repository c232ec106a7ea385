-- Runtime queries of the sync service (immich_search/sync/), loaded by name.

-- name: discover_changed_assets
-- Live assets with a preview changed since the asset cursor, oldest change first (index on "updateId").
SELECT a.id AS asset_id, a."updateId" AS update_id, f."updateId" AS preview_update_id,
       a."deletedAt" IS NULL AS live
FROM public.asset a
LEFT JOIN public.asset_file f ON f."assetId" = a.id AND f.type = 'preview' AND f."isEdited" = false
WHERE a."updateId" > %(cursor)s::uuid
ORDER BY a."updateId"
LIMIT %(limit)s

-- name: discover_changed_previews
-- Previews (re)generated since the preview cursor, e.g. after an edit or a rotation (index on "updateId").
SELECT f."assetId" AS asset_id, f."updateId" AS update_id, f."updateId" AS preview_update_id,
       a."deletedAt" IS NULL AS live
FROM public.asset_file f
JOIN public.asset a ON a.id = f."assetId"
WHERE f."updateId" > %(cursor)s::uuid AND f.type = 'preview' AND f."isEdited" = false
ORDER BY f."updateId"
LIMIT %(limit)s

-- name: enqueue_jobs
-- Queue (asset, task) pairs; an existing job is requeued only when the preview changed or force is set.
INSERT INTO immich_search.job AS j (asset_id, task, preview_update_id)
SELECT asset_id, task, preview_update_id
FROM unnest(%(asset_ids)s::uuid[], %(preview_update_ids)s::uuid[]) AS t(asset_id, preview_update_id)
CROSS JOIN unnest(%(tasks)s::text[]) AS task
ON CONFLICT (asset_id, task) DO UPDATE
SET state = 'pending', attempts = 0, run_after = now(), last_error = NULL, lease_owner = NULL,
    lease_expires_at = NULL, preview_update_id = excluded.preview_update_id, updated_at = now()
WHERE %(force)s OR j.preview_update_id IS DISTINCT FROM excluded.preview_update_id

-- name: get_cursor
SELECT update_id FROM immich_search.sync_cursor WHERE name = %(name)s

-- name: set_cursor
INSERT INTO immich_search.sync_cursor (name, update_id) VALUES (%(name)s, %(update_id)s)
ON CONFLICT (name) DO UPDATE SET update_id = greatest(immich_search.sync_cursor.update_id, excluded.update_id),
  updated_at = now()

-- name: claim_jobs
-- Claim the runnable jobs (pending and due, or running with an expired lease) of up to %(limit)s assets,
-- every task of an asset together so its preview is decoded once; oldest first.
WITH candidates AS (
  SELECT asset_id, run_after FROM immich_search.job
  WHERE task = ANY(%(tasks)s::text[])
    AND ((state = 'pending' AND run_after <= now()) OR (state = 'running' AND lease_expires_at < now()))
  ORDER BY run_after, asset_id
  LIMIT %(limit)s * cardinality(%(tasks)s::text[])
), assets AS (
  SELECT asset_id FROM candidates GROUP BY asset_id ORDER BY min(run_after), asset_id LIMIT %(limit)s
), picked AS (
  SELECT j.asset_id, j.task FROM immich_search.job j
  WHERE j.asset_id IN (SELECT asset_id FROM assets) AND j.task = ANY(%(tasks)s::text[])
    AND ((j.state = 'pending' AND j.run_after <= now()) OR (j.state = 'running' AND j.lease_expires_at < now()))
  FOR UPDATE SKIP LOCKED
)
UPDATE immich_search.job j
SET state = 'running', lease_owner = %(owner)s, lease_expires_at = now() + make_interval(secs => %(lease_s)s),
    attempts = j.attempts + 1, updated_at = now()
FROM picked
WHERE j.asset_id = picked.asset_id AND j.task = picked.task
RETURNING j.asset_id, j.task, j.attempts

-- name: job_inputs
-- What a worker needs for claimed assets: the preview path as Immich stored it.
SELECT a.id AS asset_id, f.path AS preview_path, a."originalFileName" AS original_file_name
FROM public.asset a
LEFT JOIN public.asset_file f ON f."assetId" = a.id AND f.type = 'preview' AND f."isEdited" = false
WHERE a.id = ANY(%(asset_ids)s::uuid[])

-- name: upsert_ocr
INSERT INTO immich_search.ocr (asset_id, source, model, lines, text, search_vector, tokenizer_version,
                               processed_at)
VALUES (%(asset_id)s, %(source)s, %(model)s, %(lines)s, %(text)s, %(search_vector)s::tsvector,
        %(tokenizer_version)s, now())
ON CONFLICT (asset_id) DO UPDATE
SET source = excluded.source, model = excluded.model, lines = excluded.lines, text = excluded.text,
    search_vector = excluded.search_vector, tokenizer_version = excluded.tokenizer_version,
    processed_at = excluded.processed_at

-- name: complete_job
-- Acknowledge a job, only while this worker still holds its lease.
UPDATE immich_search.job
SET state = 'done', lease_owner = NULL, lease_expires_at = NULL, last_error = NULL, updated_at = now()
WHERE asset_id = %(asset_id)s AND task = %(task)s AND lease_owner = %(owner)s
RETURNING asset_id

-- name: fail_job
-- Record a failure: retried after %(retry_in_s)s seconds, or failed for good when that is NULL.
UPDATE immich_search.job
SET state = CASE WHEN %(retry_in_s)s::float8 IS NULL THEN 'failed' ELSE 'pending' END,
    run_after = now() + make_interval(secs => coalesce(%(retry_in_s)s::float8, 0)),
    last_error = %(error)s, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
WHERE asset_id = %(asset_id)s AND task = %(task)s AND lease_owner = %(owner)s

-- name: release_jobs
-- Give back claimed jobs not yet done (a clean shutdown); their attempt is not counted.
UPDATE immich_search.job
SET state = 'pending', attempts = greatest(attempts - 1, 0), lease_owner = NULL, lease_expires_at = NULL,
    updated_at = now()
WHERE lease_owner = %(owner)s AND state = 'running'

-- name: job_counts
SELECT task, state, count(*) AS jobs FROM immich_search.job GROUP BY task, state ORDER BY task, state

-- name: recent_errors
SELECT asset_id, task, state, attempts, last_error, updated_at FROM immich_search.job
WHERE last_error IS NOT NULL ORDER BY updated_at DESC LIMIT %(limit)s

-- name: count_runnable
SELECT count(*) FROM immich_search.job
WHERE task = ANY(%(tasks)s::text[])
  AND ((state = 'pending' AND run_after <= now()) OR (state = 'running' AND lease_expires_at < now()))

-- name: configure_clip
SELECT immich_search.clip_configure_v1(%(model)s, %(dim)s)

-- name: upsert_clip
-- Only vectors of the active model: a worker still running an old model after a change writes nothing.
INSERT INTO immich_search.clip (asset_id, model, embedding, processed_at)
SELECT %(asset_id)s, %(model)s, %(embedding)s, now()
WHERE EXISTS (SELECT 1 FROM immich_search.setting WHERE key = 'clip_model' AND value = %(model)s)
ON CONFLICT (asset_id) DO UPDATE
SET model = excluded.model, embedding = excluded.embedding, processed_at = excluded.processed_at
