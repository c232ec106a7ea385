-- Revision 0004 down: everything 0004_sync_operations.sql added; the job table itself belongs to 0001.
DROP FUNCTION IF EXISTS immich_search.requeue(uuid[], text[]);
DROP FUNCTION IF EXISTS immich_search.requeue_failed(text[]);
DROP FUNCTION IF EXISTS immich_search.requeue_v1(uuid[], text[]);
DROP FUNCTION IF EXISTS immich_search.requeue_failed_v1(text[]);
DROP TRIGGER IF EXISTS job_notify_insert ON immich_search.job;
DROP TRIGGER IF EXISTS job_notify_update ON immich_search.job;
DROP FUNCTION IF EXISTS immich_search.job_notify_v1();
DROP FUNCTION IF EXISTS immich_search.uuid_v7_time_v1(uuid);
DROP INDEX IF EXISTS immich_search.job_error_idx;
DROP INDEX IF EXISTS immich_search.job_finished_idx;
DROP INDEX IF EXISTS immich_search.job_running_idx;
DROP TABLE IF EXISTS immich_search.worker;
