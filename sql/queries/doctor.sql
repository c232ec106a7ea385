-- Runtime queries of `immich-search doctor` (immich_search/doctor.py), loaded by name.

-- name: zhparser_parser
-- The text search parser of the zhparser extension, wherever it was created (public or immich_search).
SELECT p.oid
FROM pg_catalog.pg_ts_parser p
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_ts_parser'::regclass AND d.objid = p.oid AND d.deptype = 'e'
JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'zhparser'
WHERE p.prsname = 'zhparser'

-- name: zhparser_segment
-- How zhparser splits a text: its tokens in order, separated by spaces.
SELECT string_agg(t.token, ' ' ORDER BY t.ord)
FROM ts_parse(%(parser)s::oid, %(text)s) WITH ORDINALITY AS t (tokid, token, ord)

-- name: zh_configuration
-- immich_search.zh: whether it is on zhparser's parser, how many of the parser's token types it maps.
SELECT c.cfgparser = %(parser)s::oid,
       (SELECT count(*) FROM ts_token_type(%(parser)s::oid) tt
        WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_ts_config_map m WHERE m.mapcfg = c.oid AND m.maptokentype = tt.tokid)),
       (SELECT count(*) FROM ts_token_type(%(parser)s::oid))
FROM pg_catalog.pg_ts_config c JOIN pg_catalog.pg_namespace n ON n.oid = c.cfgnamespace
WHERE n.nspname = 'immich_search' AND c.cfgname = 'zh'
