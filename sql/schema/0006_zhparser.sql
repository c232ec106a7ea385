-- Revision 0006: the text search configuration immich_search.zh follows the zhparser actually present,
-- on every `immich-search migrate`, not only at revision 0001.
--
-- Why: 0001 chose the parser once, when it ran. A user who installs zhparser later (the documented way
-- for an existing Immich database: switch to the zhparser image, CREATE EXTENSION, run migrate again)
-- kept the `simple` copy for good. 0001 also mapped a fixed list of token types; this maps every type
-- the installed parser reports (ts_token_type), so no token is silently dropped should a zhparser
-- version add one (zhparser issue #79: before 2.4 the types y and z never reached the configuration).
--
-- zh_configure_v1() is idempotent: it
--   1. creates the zhparser extension in schema immich_search when the server has it but this database
--      does not (as 0001 does), unless this role may not (then a NOTICE, and nothing changes);
--   2. with zhparser present: (re)creates immich_search.zh on its parser if it is the simple copy, and
--      adds a `simple` mapping for every token type of the parser that has none;
--      without: creates the simple copy if immich_search.zh is missing (DROP EXTENSION zhparser CASCADE
--      drops it);
--   3. records the outcome in immich_search.setting (text_search_parser = zhparser | jieba) and returns it.
-- Ranking does not use immich_search.zh (OCR vectors are built by immich_search/tokens.py); it is
-- there for psql users' own to_tsvector / ts_headline.
CREATE FUNCTION immich_search.zh_configure_v1() RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
  parser_oid oid;
  config_oid oid;
  config_parser oid;
  missing text;
  outcome text;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'zhparser')
     AND EXISTS (SELECT 1 FROM pg_catalog.pg_available_extensions WHERE name = 'zhparser') THEN
    BEGIN
      CREATE EXTENSION zhparser SCHEMA immich_search;
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE NOTICE 'zhparser is installed on this server, but % may not create the extension: a superuser can run CREATE EXTENSION zhparser, then immich-search migrate', current_user;
    END;
  END IF;

  SELECT p.oid INTO parser_oid
  FROM pg_catalog.pg_ts_parser p
  JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_ts_parser'::regclass AND d.objid = p.oid AND d.deptype = 'e'
  JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid AND e.extname = 'zhparser'
  WHERE p.prsname = 'zhparser';

  SELECT c.oid, c.cfgparser INTO config_oid, config_parser
  FROM pg_catalog.pg_ts_config c JOIN pg_catalog.pg_namespace n ON n.oid = c.cfgnamespace
  WHERE n.nspname = 'immich_search' AND c.cfgname = 'zh';

  IF parser_oid IS NULL THEN
    IF config_oid IS NULL THEN
      CREATE TEXT SEARCH CONFIGURATION immich_search.zh (COPY = pg_catalog.simple);
    END IF;
    outcome := 'jieba';
  ELSE
    IF config_oid IS NOT NULL AND config_parser <> parser_oid THEN
      -- Only the simple copy is replaced; an index or view a user built on it keeps it as it is.
      BEGIN
        DROP TEXT SEARCH CONFIGURATION immich_search.zh;
        config_oid := NULL;
      EXCEPTION WHEN dependent_objects_still_exist THEN
        RAISE NOTICE 'immich_search.zh stays a copy of simple: other objects depend on it (%)', SQLERRM;
      END;
    END IF;
    IF config_oid IS NULL THEN
      EXECUTE format('CREATE TEXT SEARCH CONFIGURATION immich_search.zh (PARSER = %s.%s)',
        (SELECT quote_ident(n.nspname) FROM pg_catalog.pg_ts_parser p
           JOIN pg_catalog.pg_namespace n ON n.oid = p.prsnamespace WHERE p.oid = parser_oid),
        quote_ident('zhparser'));
      SELECT c.oid, c.cfgparser INTO config_oid, config_parser
      FROM pg_catalog.pg_ts_config c JOIN pg_catalog.pg_namespace n ON n.oid = c.cfgnamespace
      WHERE n.nspname = 'immich_search' AND c.cfgname = 'zh';
    END IF;
    IF config_parser = parser_oid THEN
      SELECT string_agg(quote_ident(t.alias), ', ' ORDER BY t.tokid) INTO missing
      FROM ts_token_type(parser_oid) t
      WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_ts_config_map m
                        WHERE m.mapcfg = config_oid AND m.maptokentype = t.tokid);
      IF missing IS NOT NULL THEN
        EXECUTE format('ALTER TEXT SEARCH CONFIGURATION immich_search.zh ADD MAPPING FOR %s WITH pg_catalog.simple',
                       missing);
      END IF;
      outcome := 'zhparser';
    ELSE
      outcome := 'jieba';
    END IF;
  END IF;

  INSERT INTO immich_search.setting (key, value) VALUES ('text_search_parser', outcome)
  ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
  RETURN outcome;
END
$$;
COMMENT ON FUNCTION immich_search.zh_configure_v1() IS
  'immich-search: (re)creates immich_search.zh on zhparser when present, every token type mapped; returns zhparser | jieba';

SELECT immich_search.zh_configure_v1();
