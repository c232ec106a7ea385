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
-- What a worker needs for claimed assets: the preview path as Immich stored it, the owner (API mode).
SELECT a.id AS asset_id, f.path AS preview_path, a."originalFileName" AS original_file_name,
       a."ownerId" AS owner_id
FROM public.asset a
LEFT JOIN public.asset_file f ON f."assetId" = a.id AND f.type = 'preview' AND f."isEdited" = false
WHERE a.id = ANY(%(asset_ids)s::uuid[])

-- name: upsert_ocr
INSERT INTO immich_search.ocr (asset_id, source, engine, model, lines, text, search_vector, tokenizer_version,
                               processed_at)
VALUES (%(asset_id)s, %(source)s, %(engine)s, %(model)s, %(lines)s, %(text)s, %(search_vector)s::tsvector,
        %(tokenizer_version)s, now())
ON CONFLICT (asset_id) DO UPDATE
SET source = excluded.source, engine = excluded.engine, model = excluded.model, lines = excluded.lines,
    text = excluded.text,
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

-- ---------------------------------------------------------------------------------------------------------
-- Sync operations (revision 0004): leases and heartbeats, workers, requeue, watch, status, Immich's OCR.

-- name: claim_asset_jobs
-- Claim the runnable jobs of the given assets only (`immich-search reprocess`).
WITH picked AS (
  SELECT asset_id, task FROM immich_search.job
  WHERE asset_id = ANY(%(asset_ids)s::uuid[]) AND task = ANY(%(tasks)s::text[])
    AND ((state = 'pending' AND run_after <= now()) OR (state = 'running' AND lease_expires_at < now()))
  ORDER BY asset_id, task
  LIMIT %(limit)s * cardinality(%(tasks)s::text[])
  FOR UPDATE SKIP LOCKED
)
UPDATE immich_search.job j
SET state = 'running', lease_owner = %(owner)s, lease_expires_at = now() + make_interval(secs => %(lease_s)s),
    attempts = j.attempts + 1, updated_at = now()
FROM picked
WHERE j.asset_id = picked.asset_id AND j.task = picked.task
RETURNING j.asset_id, j.task, j.attempts

-- name: extend_leases
-- Heartbeat: push back the expiry of every lease this worker holds (index job_running_idx).
UPDATE immich_search.job
SET lease_expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE state = 'running' AND lease_owner = %(owner)s

-- name: register_worker
INSERT INTO immich_search.worker (id, host, pid, tasks, source, state)
VALUES (%(id)s, %(host)s, %(pid)s, %(tasks)s, %(source)s, 'idle')
ON CONFLICT (id) DO UPDATE SET tasks = excluded.tasks, source = excluded.source, heartbeat_at = now()

-- name: worker_heartbeat
-- Counters are absolute (this worker's totals); the row is recreated should it have been pruned.
INSERT INTO immich_search.worker (id, host, pid, tasks, source, state, jobs_done, jobs_failed)
VALUES (%(id)s, %(host)s, %(pid)s, %(tasks)s, %(source)s, %(state)s, %(done)s, %(failed)s)
ON CONFLICT (id) DO UPDATE SET state = excluded.state, jobs_done = excluded.jobs_done,
  jobs_failed = excluded.jobs_failed, heartbeat_at = now()

-- name: unregister_worker
DELETE FROM immich_search.worker WHERE id = %(id)s

-- name: prune_workers
-- Rows of workers silent for longer than %(older_than_s)s seconds (they died without saying goodbye).
DELETE FROM immich_search.worker WHERE heartbeat_at < now() - make_interval(secs => %(older_than_s)s)

-- name: discovery_lock
-- One discoverer at a time across every machine (released with discovery_unlock on the same connection).
SELECT pg_advisory_lock(%(key)s)

-- name: discovery_try_lock
-- The same lock, without waiting: false while another process discovers.
SELECT pg_try_advisory_lock(%(key)s)

-- name: discovery_unlock
SELECT pg_advisory_unlock(%(key)s)

-- name: next_due
-- Seconds until the next job of these tasks becomes runnable (a retry's backoff ends, a lease expires);
-- NULL when none is waiting. Index-backed: job_claim_idx per task, job_running_idx.
SELECT extract(epoch FROM least(
  (SELECT min(n.run_after) FROM unnest(%(tasks)s::text[]) AS t(task),
     LATERAL (SELECT run_after FROM immich_search.job
              WHERE task = t.task AND state = 'pending' ORDER BY run_after LIMIT 1) AS n),
  (SELECT min(lease_expires_at) FROM immich_search.job WHERE state = 'running' AND task = ANY(%(tasks)s::text[]))
) - now())::float8

-- name: requeue
SELECT immich_search.requeue_v2(%(asset_ids)s::uuid[], %(tasks)s::text[])

-- name: existing_assets
SELECT id, "deletedAt" IS NOT NULL AS trashed FROM public.asset WHERE id = ANY(%(asset_ids)s::uuid[])

-- name: asset_jobs
SELECT asset_id, task, state, attempts, last_error, lease_owner FROM immich_search.job
WHERE asset_id = ANY(%(asset_ids)s::uuid[]) ORDER BY asset_id, task

-- name: status_throughput
-- Jobs finished (done or failed) in the last minute, 10 minutes and hour (index job_finished_idx).
SELECT count(*) FILTER (WHERE updated_at > now() - interval '1 minute') AS last_minute,
       count(*) FILTER (WHERE updated_at > now() - interval '10 minutes') AS last_10_minutes,
       count(*) AS last_hour
FROM immich_search.job
WHERE state IN ('done', 'failed') AND updated_at > now() - interval '1 hour'

-- name: status_waiting
-- Runnable jobs per task (pending and due, or leased by a worker whose lease has expired: claim_jobs takes
-- those over) and how long the oldest has waited.
SELECT task, count(*) AS jobs, extract(epoch FROM now() - min(updated_at))::float8 AS oldest_s
FROM immich_search.job
WHERE (state = 'pending' AND run_after <= now()) OR (state = 'running' AND lease_expires_at < now())
GROUP BY task ORDER BY task

-- name: status_later
-- Jobs no worker may take yet, per task and reason: 'leased' (a worker holds them until its lease
-- expires; a killed worker's jobs wait for that) or 'backoff' (a retry after a failure, at run_after);
-- with the seconds until the first of them becomes runnable.
SELECT task, CASE WHEN state = 'running' THEN 'leased' ELSE 'backoff' END AS reason, count(*) AS jobs,
       greatest(extract(epoch FROM min(CASE WHEN state = 'running' THEN lease_expires_at ELSE run_after END)
                                   - now()), 0)::float8 AS next_s
FROM immich_search.job
WHERE (state = 'pending' AND run_after > now()) OR (state = 'running' AND lease_expires_at >= now())
GROUP BY 1, 2 ORDER BY 1, 2

-- name: status_cursors
SELECT name, update_id, immich_search.uuid_v7_time_v1(update_id) AS cursor_time, updated_at
FROM immich_search.sync_cursor ORDER BY name

-- name: status_immich_latest
-- When Immich last changed an asset (a backward scan of the "updateId" index; uuid v7 carries the time).
SELECT immich_search.uuid_v7_time_v1((SELECT "updateId" FROM public.asset ORDER BY "updateId" DESC LIMIT 1))
  AS asset_time

-- name: status_undiscovered
-- Live assets changed after a cursor, not yet seen by discovery (an index range scan, capped).
SELECT count(*) FROM (
  SELECT 1 FROM public.asset WHERE "updateId" > %(cursor)s::uuid AND "deletedAt" IS NULL LIMIT %(cap)s
) AS ahead

-- name: status_workers
SELECT id, host, pid, tasks, source, state, jobs_done, jobs_failed, started_at, heartbeat_at,
       extract(epoch FROM now() - heartbeat_at)::float8 AS silent_s
FROM immich_search.worker ORDER BY started_at, id

-- name: immich_ocr_available
-- Immich v2.2+ runs its own OCR: table asset_ocr and asset_job_status."ocrAt".
SELECT to_regclass('public.asset_ocr') IS NOT NULL
   AND EXISTS (SELECT 1 FROM information_schema.columns
               WHERE table_schema = 'public' AND table_name = 'asset_job_status' AND column_name = 'ocrAt')

-- name: immich_ocr_state
-- Per asset: has Immich OCR'd its current preview ("ocrAt" after the preview was last written)?
SELECT ids.id AS asset_id,
       s."ocrAt" IS NOT NULL AND (f."updatedAt" IS NULL OR s."ocrAt" >= f."updatedAt") AS fresh
FROM unnest(%(asset_ids)s::uuid[]) AS ids(id)
LEFT JOIN public.asset_job_status s ON s."assetId" = ids.id
LEFT JOIN public.asset_file f ON f."assetId" = ids.id AND f.type = 'preview' AND f."isEdited" = false

-- name: immich_ocr_lines
-- Immich's visible text boxes of the assets, top to bottom then left to right (index asset_ocr_assetId_idx).
SELECT "assetId" AS asset_id, text, "textScore" AS score, x1, y1, x2, y2, x3, y3, x4, y4
FROM public.asset_ocr
WHERE "assetId" = ANY(%(asset_ids)s::uuid[]) AND "isVisible"
ORDER BY "assetId", least(y1, y2), least(x1, x4), id

-- name: clip_model_setting
-- The active CLIP model, when one is configured (revision 0002's setting).
SELECT value FROM immich_search.setting WHERE key = 'clip_model'

-- name: status_ocr_engines
-- OCR rows by the engine and model that read them (what indexed what; a library moves to another
-- engine with `sync --force --ocr-engine NAME`).
SELECT engine, model, count(*) AS photos, max(processed_at) AS latest
FROM immich_search.ocr
GROUP BY engine, model
ORDER BY photos DESC, engine, model

-- name: requeue_other_engines
-- Put the photos our own OCR read with another engine than %(engine)s at the head of the OCR queue
-- (`sync --reread-other-engines`); rows from Immich's own OCR are left alone. Returns the jobs queued.
SELECT immich_search.requeue(
  ARRAY(SELECT o.asset_id FROM immich_search.ocr o WHERE o.source = 'rapidocr' AND o.engine <> %(engine)s),
  ARRAY['ocr'])

-- ---------------------------------------------------------------------------------------------------------
-- Descriptions from a vision LLM (revision 0008).

-- name: upsert_description
INSERT INTO immich_search.description (asset_id, text, model, host, search_vector, tokenizer_version, processed_at)
VALUES (%(asset_id)s, %(text)s, %(model)s, %(host)s, %(search_vector)s::tsvector, %(tokenizer_version)s, now())
ON CONFLICT (asset_id) DO UPDATE
SET text = excluded.text, model = excluded.model, host = excluded.host, search_vector = excluded.search_vector,
    tokenizer_version = excluded.tokenizer_version, processed_at = excluded.processed_at

-- name: set_describe_model
-- The model the describe task runs (requeue_v2 then includes 'describe' when no task is named).
INSERT INTO immich_search.setting (key, value) VALUES ('describe_model', %(model)s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value

-- name: defer_job
-- Put a job back to wait %(retry_in_s)s seconds without counting the attempt (e.g. every vision host is
-- down: nothing is wrong with the asset).
UPDATE immich_search.job
SET state = 'pending', attempts = greatest(attempts - 1, 0),
    run_after = now() + make_interval(secs => %(retry_in_s)s::float8),
    last_error = %(error)s, lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
WHERE asset_id = %(asset_id)s AND task = %(task)s AND lease_owner = %(owner)s

-- ---------------------------------------------------------------------------------------------------------
-- Descriptions written into Immich through its API (revision 0010, `sync --write-immich`).

-- name: immich_write_inputs
-- Per asset: its owner (whose API key may change its description), whether it is in the locked folder (no
-- API key may change it there) and the text we wrote last time.
SELECT a.id AS asset_id, a."ownerId" AS owner_id, a.visibility::text = 'locked' AS locked, r.written_text
FROM public.asset a
LEFT JOIN immich_search.immich_description r ON r.asset_id = a.id
WHERE a.id = ANY(%(asset_ids)s::uuid[])

-- name: pending_immich_writes
-- Stored descriptions still to be written into Immich (the last try failed) that were made by %(model)s
-- from the preview the describe job is for now: a retried job writes them without asking the model again.
SELECT r.asset_id, d.text, a."ownerId" AS owner_id, a.visibility::text = 'locked' AS locked, r.written_text
FROM immich_search.immich_description r
JOIN immich_search.description d ON d.asset_id = r.asset_id
JOIN immich_search.job j ON j.asset_id = r.asset_id AND j.task = 'describe'
JOIN public.asset a ON a.id = r.asset_id
WHERE r.asset_id = ANY(%(asset_ids)s::uuid[]) AND d.model = %(model)s
  AND r.pending_preview_update_id IS NOT NULL AND r.pending_preview_update_id = j.preview_update_id

-- name: record_immich_write
-- What happened in Immich (%(outcome)s: written, unchanged, kept or locked). written and unchanged store the
-- text as ours; kept and locked leave written_text as it was. A pending write, if any, is done.
INSERT INTO immich_search.immich_description AS r
  (asset_id, written_text, written_sha256, written_at, written_by, last_outcome, last_attempt_at)
SELECT %(asset_id)s, CASE WHEN w THEN %(text)s END, CASE WHEN w THEN sha256(convert_to(%(text)s, 'UTF8')) END,
       CASE WHEN w THEN now() END, CASE WHEN w THEN %(owner_id)s::uuid END, %(outcome)s, now()
FROM (SELECT %(outcome)s IN ('written', 'unchanged') AS w) AS o
ON CONFLICT (asset_id) DO UPDATE
SET written_text = coalesce(excluded.written_text, r.written_text),
    written_sha256 = coalesce(excluded.written_sha256, r.written_sha256),
    written_at = coalesce(excluded.written_at, r.written_at),
    written_by = coalesce(excluded.written_by, r.written_by),
    last_outcome = excluded.last_outcome, pending_preview_update_id = NULL, last_error = NULL,
    last_attempt_at = excluded.last_attempt_at

-- name: record_immich_write_failed
-- The description is stored but could not be written into Immich: remember it for the retried job.
INSERT INTO immich_search.immich_description AS r
  (asset_id, last_outcome, pending_preview_update_id, last_error, last_attempt_at)
VALUES (%(asset_id)s, 'failed',
        (SELECT j.preview_update_id FROM immich_search.job j WHERE j.asset_id = %(asset_id)s AND j.task = 'describe'),
        %(error)s, now())
ON CONFLICT (asset_id) DO UPDATE
SET last_outcome = 'failed', pending_preview_update_id = excluded.pending_preview_update_id,
    last_error = excluded.last_error, last_attempt_at = excluded.last_attempt_at

-- name: database_now
-- The database's clock (what last_attempt_at is stamped with), to count what a pass did since.
SELECT now()

-- name: immich_write_summary
-- What passes since %(since)s did in Immich, by outcome (see record_immich_write; failed ones wait to be
-- retried).
SELECT count(*) FILTER (WHERE last_outcome IN ('written', 'unchanged')) AS written,
       count(*) FILTER (WHERE last_outcome = 'kept') AS kept,
       count(*) FILTER (WHERE last_outcome = 'locked') AS locked,
       count(*) FILTER (WHERE last_outcome = 'failed') AS failed
FROM immich_search.immich_description
WHERE last_attempt_at >= %(since)s

-- name: status_immich_writes
-- Descriptions written into Immich (`--write-immich`), by the outcome of their last try.
SELECT last_outcome, count(*) FROM immich_search.immich_description GROUP BY last_outcome ORDER BY last_outcome
