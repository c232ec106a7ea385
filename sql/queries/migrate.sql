-- Runtime queries of `immich-search migrate` (immich_search/migrate.py), loaded by name.

-- name: zh_configure_exists
-- Whether revision 0007's function is there (a database migrated to an older target has none).
SELECT to_regprocedure('immich_search.zh_configure_v1()') IS NOT NULL

-- name: zh_configure
-- Follow the zhparser installed now (sql/schema/0007_zhparser.sql): returns zhparser | jieba.
SELECT immich_search.zh_configure_v1()
