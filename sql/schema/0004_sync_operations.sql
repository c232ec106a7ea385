-- Schema immich_search, revision 0004: sync operations (issue 5): worker heartbeats, requeue from psql,
-- wake-up notifications for `sync --watch`, and what `immich-search status` reads.
-- Nothing here touches Immich's tables: the notifications come from our own job table.

-- The sync processes alive now, on any machine: each one registers at start, stamps heartbeat_at with its
-- counters every few seconds (together with its leases) and removes its row on a clean exit. A row whose
-- heartbeat is old is a worker that died (SIGKILL, power cut); its leases expire and its jobs are taken over.
CREATE TABLE immich_search.worker (
  id text PRIMARY KEY,                 -- the lease owner name: host:pid:random
  host text NOT NULL,
  pid integer NOT NULL,
  tasks text[] NOT NULL,
  source text NOT NULL,                -- where it reads previews: files | api
  state text NOT NULL DEFAULT 'idle' CHECK (state IN ('idle', 'working', 'paused')),
  jobs_done bigint NOT NULL DEFAULT 0,
  jobs_failed bigint NOT NULL DEFAULT 0,
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);

-- Leases: the few running jobs, found by owner (heartbeat, release) and by expiry (the next take-over).
CREATE INDEX job_running_idx ON immich_search.job (lease_expires_at) WHERE state = 'running';
-- Throughput: jobs finished recently.
CREATE INDEX job_finished_idx ON immich_search.job (updated_at) WHERE state IN ('done', 'failed');
-- Recent errors, newest first.
CREATE INDEX job_error_idx ON immich_search.job (updated_at) WHERE last_error IS NOT NULL;

-- The time inside a uuid v7 (its first 48 bits: milliseconds since 1970), e.g. Immich's "updateId":
-- how far behind Immich the sync cursors are. Meaningless for other uuid versions.
CREATE FUNCTION immich_search.uuid_v7_time_v1(id uuid) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN to_timestamp(('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::bigint / 1000.0);

-- Wake-up for `sync --watch` on every machine: after a statement leaves a job pending and due (discovery
-- queued it, requeue_v1, a worker released it), NOTIFY immich_search_sync. Listeners then poll the queue;
-- a notification is only a hint (polling stays), so one per statement is plenty.
CREATE FUNCTION immich_search.job_notify_v1() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF EXISTS (SELECT 1 FROM changed_jobs WHERE state = 'pending' AND run_after <= now()) THEN
    PERFORM pg_notify('immich_search_sync', '');
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER job_notify_insert AFTER INSERT ON immich_search.job
  REFERENCING NEW TABLE AS changed_jobs FOR EACH STATEMENT EXECUTE FUNCTION immich_search.job_notify_v1();
CREATE TRIGGER job_notify_update AFTER UPDATE ON immich_search.job
  REFERENCING NEW TABLE AS changed_jobs FOR EACH STATEMENT EXECUTE FUNCTION immich_search.job_notify_v1();

-- Regenerate the data of some assets: queue their jobs again at the head of the queue (run_after
-- -infinity), whatever their state. tasks: 'ocr' and/or 'clip'; NULL means 'ocr', plus 'clip' when a CLIP
-- model is configured. A job running now loses its lease: that worker's result is discarded and the job
-- is done again. Assets that do not exist are skipped. Returns the number of jobs queued. Raises for an
-- unknown task. Workers in `sync --watch` wake at once (job_notify_v1).
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

-- Give failed jobs (of tasks, NULL for all) a fresh set of attempts, e.g. after fixing file permissions
-- or adding an API key. Returns the number of jobs queued.
CREATE FUNCTION immich_search.requeue_failed_v1(tasks text[] DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  queued integer;
BEGIN
  UPDATE immich_search.job
  SET state = 'pending', attempts = 0, run_after = now(), last_error = NULL, updated_at = now()
  WHERE state = 'failed' AND (tasks IS NULL OR task = ANY(tasks));
  GET DIAGNOSTICS queued = ROW_COUNT;
  RETURN queued;
END
$$;

-- The stable names for psql users; a later revision repoints them at a newer version.
CREATE FUNCTION immich_search.requeue(asset_ids uuid[], tasks text[] DEFAULT NULL) RETURNS integer
LANGUAGE sql AS $$ SELECT immich_search.requeue_v1(asset_ids, tasks) $$;
CREATE FUNCTION immich_search.requeue_failed(tasks text[] DEFAULT NULL) RETURNS integer
LANGUAGE sql AS $$ SELECT immich_search.requeue_failed_v1(tasks) $$;
