-- Schema immich_search, revision 0005: honest versions (issue 13). The rule (sql/README.md): a versioned
-- function never changes and calls only versioned functions; runtime code calls versioned names; the
-- stable names are the psql API and point at the newest versions; superseded versions are dropped once
-- nothing calls them.
--
-- * search_v1 and search_hybrid_tsquery_v1 called the stable names that 0003 repointed to v2, so two "v1"
--   functions computed with v2 logic: search_v2 and search_hybrid_tsquery_v2 call only versioned names.
-- * One visibility rule: search_clip_v2 decides what the caller sees with can_see_v2, as the text branch
--   does (search_clip_v1 had it written out twice, and visible_assets_v1 a third time).
-- * Long queries are capped: capped_query_v1 keeps the first 256 characters after NFKC (a query of
--   3,000 U+FDFA expands to 54,000 characters, took a minute and ended in "value is too big in tsquery").
--   The Python path caps the same way (immich_search/ranking/query_language.py, MAX_QUERY_CHARS).
-- * The superseded versions nothing calls any more are dropped (0005_down.sql and the 0001 files bring
--   them back on a downgrade).

-- The search-bar query as the tokenizers read it: NFKC first (as they do), then at most 256 characters
-- (MAX_QUERY_CHARS in query_language.py). Only the first 1,024 characters are normalised: NFKC expands a
-- character to at most 18 (U+FDFA), and never needs text that far on to decide the first 256.
CREATE FUNCTION immich_search.capped_query_v1(query text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN left(normalize(left(query, 1024), NFKC), 256);

-- The SQL query tokenizer on the capped query.
CREATE FUNCTION immich_search.ocr_tsquery_v3(query text, strict boolean DEFAULT false) RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE
RETURN immich_search.ocr_tsquery_v2(immich_search.capped_query_v1(query), strict);

-- Vector branch: the caller's visible assets nearest to query_vector (cosine), best first. search_clip_v1
-- with Immich's visibility rule from can_see_v2, the one function every branch uses.
-- score = cosine similarity (1 - cosine distance, in [-1, 1]).
-- A filtered approximate search loses recall when the caller owns a small share of a large library, so:
-- * up to exact_limit visible assets (default 10,000; the setting immich_search.exact_limit changes it for
--   a session or a database): an exact scan of just those (about 10 ms for 2,000 vectors of 512 floats);
-- * more: the index, with iterative scans on pgvector >= 0.8 (hnsw.iterative_scan = relaxed_order,
--   re-sorted here) and ef_search raised to the number wanted; should the index still return fewer rows
--   than wanted (old pgvector, a tiny share), the exact scan answers instead.
CREATE FUNCTION immich_search.search_clip_v2(
  query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false, exact_limit integer DEFAULT NULL)
RETURNS TABLE (asset_id uuid, original_file_name text, score real)
-- VOLATILE: it sets the index scan parameters (set_config) for its own query.
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  wanted integer := greatest(k, 0) + greatest("offset", 0);
  -- Over-fetch from the index and re-sort: relaxed-order iterative scans return near, not exact, order.
  overfetch integer := least(greatest(4 * wanted, 40), 4000);
  visible_count bigint;
  partners uuid[];
  owners uuid[];
  ids uuid[];
  names text[];
  distances float8[];
  saved_ef text;
  saved_iterative text;
BEGIN
  IF query_vector IS NULL OR wanted = 0 THEN
    RETURN;
  END IF;
  -- The argument, else the session's or database's setting (SET immich_search.exact_limit = 50000), else 10,000.
  exact_limit := greatest(coalesce(exact_limit, nullif(current_setting('immich_search.exact_limit', true), '')::integer,
                                   10000), 0);
  -- Partners who share with the caller in timeline (Immich's smart search rule; can_see_v2 checks each asset).
  partners := ARRAY(SELECT p."sharedById" FROM public.partner p WHERE p."sharedWithId" = user_id AND p."inTimeline");
  owners := ARRAY[user_id] || partners;
  SELECT count(*) INTO visible_count
  FROM (SELECT 1 FROM public.asset a
        WHERE a."ownerId" = ANY(owners)
          AND immich_search.can_see_v2(a."ownerId", a.visibility::text, a."deletedAt", user_id, partners, include_locked)
        LIMIT exact_limit::bigint + 1) AS v;
  IF visible_count > exact_limit THEN
    saved_ef := current_setting('hnsw.ef_search', true);
    PERFORM set_config('hnsw.ef_search', least(greatest(overfetch, 100), 1000)::text, true);
    IF immich_search.pgvector_iterative_scan_v1() THEN
      saved_iterative := current_setting('hnsw.iterative_scan', true);
      PERFORM set_config('hnsw.iterative_scan', 'relaxed_order', true);
    END IF;
    WITH nearest AS MATERIALIZED (
      SELECT c.asset_id, a."originalFileName"::text AS name, c.embedding <=> query_vector AS distance
      FROM immich_search.clip c
      JOIN public.asset a ON a.id = c.asset_id
      WHERE a."ownerId" = ANY(owners)
        AND immich_search.can_see_v2(a."ownerId", a.visibility::text, a."deletedAt", user_id, partners, include_locked)
      ORDER BY c.embedding <=> query_vector
      LIMIT overfetch
    )
    SELECT array_agg(n.asset_id ORDER BY n.distance, n.asset_id),
           array_agg(n.name ORDER BY n.distance, n.asset_id),
           array_agg(n.distance ORDER BY n.distance, n.asset_id)
    INTO ids, names, distances
    FROM nearest n;
    IF saved_ef IS NOT NULL THEN PERFORM set_config('hnsw.ef_search', saved_ef, true); END IF;
    IF saved_iterative IS NOT NULL THEN PERFORM set_config('hnsw.iterative_scan', saved_iterative, true); END IF;
    IF coalesce(cardinality(ids), 0) >= wanted THEN
      RETURN QUERY
        SELECT t.id, t.name, (1 - t.distance)::real
        FROM unnest(ids, names, distances) WITH ORDINALITY AS t(id, name, distance, n)
        ORDER BY t.n OFFSET greatest("offset", 0) LIMIT greatest(k, 0);
      RETURN;
    END IF;
    -- Too few rows from the index: the exact scan below is authoritative.
  END IF;
  RETURN QUERY
    -- From the visible assets to their vectors by primary key: the cost follows the caller's share, not
    -- the library's size.
    WITH visible AS MATERIALIZED (
      -- The owners' assets through Immich's "ownerId" index (one probe per owner, whatever the plan).
      SELECT a.id AS asset_id, a."originalFileName"::text AS name FROM public.asset a
      WHERE a."ownerId" = ANY(owners)
        AND immich_search.can_see_v2(a."ownerId", a.visibility::text, a."deletedAt", user_id, partners, include_locked)
    ), scored AS MATERIALIZED (
      -- A correlated subquery is one primary-key probe per visible asset; a join would be planned as a
      -- hash join reading the whole vector table.
      SELECT v.asset_id, v.name,
             (SELECT x.embedding FROM immich_search.clip x WHERE x.asset_id = v.asset_id) <=> query_vector AS distance
      FROM visible v
    )
    SELECT s.asset_id, s.name, (1 - s.distance)::real
    FROM scored s
    WHERE s.distance IS NOT NULL
    ORDER BY s.distance, s.asset_id
    OFFSET greatest("offset", 0) LIMIT greatest(k, 0);
END
$$;

-- Hybrid ranking (search_hybrid_tsquery_v1, calling only versioned functions) from ready-made tsqueries
-- and a query vector (either may be NULL: that branch is off).
-- Each branch is capped at `candidates` and filtered to what the caller may see, then fused:
-- * fusion 'rrf' (default): weighted reciprocal rank fusion, sum of weight / (rrf_k + rank), rrf_k = 60
--   as in Cormack, Clarke & Buettcher, "Reciprocal Rank Fusion outperforms Condorcet and individual rank
--   learning methods", SIGIR 2009;
-- * fusion 'convex': ocr_weight * ocr + clip_weight * clip over min-max normalised branch scores, the
--   weights scaled to sum to 1 (an asset missing from a branch scores 0 there).
-- Ties: better best rank first, then the OCR rank, then asset id, so a page never reorders between calls.
-- Raises for an unknown fusion or negative weights.
CREATE FUNCTION immich_search.search_hybrid_tsquery_v2(
  loose tsquery, strict tsquery, query_vector vector, user_id uuid, k integer DEFAULT 10,
  "offset" integer DEFAULT 0, include_locked boolean DEFAULT false, fusion text DEFAULT 'rrf',
  ocr_weight real DEFAULT 1, clip_weight real DEFAULT 1, candidates integer DEFAULT 100,
  rrf_k integer DEFAULT 60)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text,
               ocr_rank integer, clip_rank integer, ocr_score real, clip_score real)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
  pool integer := greatest(candidates, greatest(k, 0) + greatest("offset", 0));
BEGIN
  IF fusion IS NULL OR fusion NOT IN ('rrf', 'convex') THEN
    RAISE EXCEPTION 'fusion must be rrf or convex, not %', coalesce(fusion, 'NULL') USING ERRCODE = '22023';
  END IF;
  IF ocr_weight IS NULL OR clip_weight IS NULL OR ocr_weight < 0 OR clip_weight < 0
     OR ocr_weight + clip_weight = 0 THEN
    RAISE EXCEPTION 'fusion weights must be >= 0 and not both 0 (ocr %, clip %)', ocr_weight, clip_weight
      USING ERRCODE = '22023';
  END IF;
  IF rrf_k IS NULL OR rrf_k < 0 THEN
    RAISE EXCEPTION 'rrf_k must be >= 0, not %', rrf_k USING ERRCODE = '22023';
  END IF;
  RETURN QUERY
    WITH ocr AS MATERIALIZED (
      -- Candidates without snippets: the page's snippets are made below.
      SELECT o.asset_id, o.original_file_name, o.score, o.n::integer AS rank
      FROM immich_search.ocr_candidates_v2(loose, strict, user_id, pool, include_locked)
           WITH ORDINALITY AS o(asset_id, original_file_name, score, n)
      WHERE ocr_weight > 0
    ), clip AS MATERIALIZED (
      SELECT c.asset_id, c.original_file_name, c.score, c.n::integer AS rank
      FROM immich_search.search_clip_v2(query_vector, user_id, pool, 0, include_locked)
           WITH ORDINALITY AS c(asset_id, original_file_name, score, n)
      WHERE clip_weight > 0
    ), bounds AS (
      SELECT (SELECT min(score) FROM ocr) AS ocr_min, (SELECT max(score) FROM ocr) AS ocr_max,
             (SELECT min(score) FROM clip) AS clip_min, (SELECT max(score) FROM clip) AS clip_max
    ), joined AS (
      SELECT coalesce(o.asset_id, c.asset_id) AS asset_id,
             coalesce(o.original_file_name, c.original_file_name) AS original_file_name,
             o.rank AS ocr_rank, c.rank AS clip_rank,
             o.score AS ocr_score, c.score AS clip_score,
             CASE WHEN fusion = 'rrf' THEN
               coalesce(ocr_weight / (rrf_k + o.rank)::float8, 0) + coalesce(clip_weight / (rrf_k + c.rank)::float8, 0)
             ELSE
               (ocr_weight * CASE WHEN o.asset_id IS NULL THEN 0
                                  WHEN b.ocr_max > b.ocr_min THEN (o.score - b.ocr_min) / (b.ocr_max - b.ocr_min)
                                  ELSE 1 END
                + clip_weight * CASE WHEN c.asset_id IS NULL THEN 0
                                     WHEN b.clip_max > b.clip_min THEN (c.score - b.clip_min) / (b.clip_max - b.clip_min)
                                     ELSE 1 END)
               / (ocr_weight + clip_weight)
             END AS fused
      FROM ocr o FULL JOIN clip c ON c.asset_id = o.asset_id CROSS JOIN bounds b
    )
    , page AS (
      SELECT * FROM joined j
      ORDER BY j.fused DESC, least(j.ocr_rank, j.clip_rank), j.ocr_rank NULLS LAST, j.asset_id
      OFFSET greatest("offset", 0) LIMIT greatest(k, 0)
    )
    SELECT p.asset_id, p.original_file_name, p.fused::real,
           CASE WHEN p.ocr_rank IS NULL THEN '' ELSE immich_search.snippet_v2(t.text, loose) END,
           p.ocr_rank, p.clip_rank, p.ocr_score, p.clip_score
    FROM page p
    LEFT JOIN immich_search.ocr t ON t.asset_id = p.asset_id
    ORDER BY p.fused DESC, least(p.ocr_rank, p.clip_rank), p.ocr_rank NULLS LAST, p.asset_id;
END
$$;

-- Hybrid search from psql (search_v1 on versioned functions, the query capped by ocr_tsquery_v3): the search-bar query language tokenised in SQL and a query vector computed
-- by the caller (e.g. `immich-search search --print-vector`); `clip:` queries use only the vector,
-- `ocr:` queries only the text, plain queries both; a NULL vector turns the vector branch off.
CREATE FUNCTION immich_search.search_v2(
  query text, query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false, fusion text DEFAULT 'rrf', ocr_weight real DEFAULT 1,
  clip_weight real DEFAULT 1, candidates integer DEFAULT 100)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text,
               ocr_rank integer, clip_rank integer, ocr_score real, clip_score real)
LANGUAGE sql VOLATILE AS $$
  SELECT h.* FROM (SELECT immich_search.query_mode_v1(query) AS mode) AS m
  CROSS JOIN LATERAL immich_search.search_hybrid_tsquery_v2(
    CASE WHEN m.mode <> 'clip' THEN immich_search.ocr_tsquery_v3(query, false) END,
    CASE WHEN m.mode <> 'clip' THEN immich_search.ocr_tsquery_v3(query, true) END,
    CASE WHEN m.mode <> 'ocr' THEN query_vector END,
    user_id, k, "offset", include_locked, fusion, ocr_weight, clip_weight, candidates) AS h
$$;

-- OCR search from psql (search_ocr_v2 with the query capped, see ocr_tsquery_v3): the search-bar query language, tokenised in SQL (no Python, no zhparser). The
-- tsqueries are built once per call, whatever plan the caller's (prepared) statement gets.
CREATE FUNCTION immich_search.search_ocr_v3(
  query text, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
  loose_query tsquery := immich_search.ocr_tsquery_v3(query, false);
  strict_query tsquery := immich_search.ocr_tsquery_v3(query, true);
BEGIN
  RETURN QUERY SELECT * FROM immich_search.search_ocr_tsquery_v2(loose_query, strict_query, user_id, k, "offset",
                                                                include_locked);
END
$$;

-- The stable names (the psql API) follow the newest versions; search_ocr_tsquery, ocr_candidates and
-- snippet already point at their newest (v2).
CREATE OR REPLACE FUNCTION immich_search.ocr_tsquery(query text, strict boolean DEFAULT false) RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE
RETURN immich_search.ocr_tsquery_v3(query, strict);

CREATE OR REPLACE FUNCTION immich_search.search_ocr(
  query text, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.search_ocr_v3(query, user_id, k, "offset", include_locked)
$$;

CREATE OR REPLACE FUNCTION immich_search.search_clip(
  query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real)
LANGUAGE sql VOLATILE AS $$
  SELECT * FROM immich_search.search_clip_v2(query_vector, user_id, k, "offset", include_locked)
$$;

CREATE OR REPLACE FUNCTION immich_search.search(
  query text, query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false, fusion text DEFAULT 'rrf', ocr_weight real DEFAULT 1,
  clip_weight real DEFAULT 1, candidates integer DEFAULT 100)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text,
               ocr_rank integer, clip_rank integer, ocr_score real, clip_score real)
LANGUAGE sql VOLATILE AS $$
  SELECT * FROM immich_search.search_v2(query, query_vector, user_id, k, "offset", include_locked, fusion,
                                        ocr_weight, clip_weight, candidates)
$$;

-- Superseded versions that nothing calls any more (the v1 query tokenizer and OCR ranking of 0001, the
-- v1 vector and hybrid rankings of 0002, search_ocr_v2 of 0003). Callers first.
DROP FUNCTION immich_search.search_v1(text, vector, uuid, integer, integer, boolean, text, real, real, integer);
DROP FUNCTION immich_search.search_hybrid_tsquery_v1(
  tsquery, tsquery, vector, uuid, integer, integer, boolean, text, real, real, integer, integer);
DROP FUNCTION immich_search.search_clip_v1(vector, uuid, integer, integer, boolean, integer);
DROP FUNCTION immich_search.search_ocr_v2(text, uuid, integer, integer, boolean);
DROP FUNCTION immich_search.ocr_candidates_v1(tsquery, tsquery, uuid, integer, boolean);
DROP FUNCTION immich_search.search_ocr_v1(text, uuid, integer, integer, boolean);
DROP FUNCTION immich_search.search_ocr_tsquery_v1(tsquery, tsquery, uuid, integer, integer, boolean);
DROP FUNCTION immich_search.visible_assets_v1(uuid, boolean);
DROP FUNCTION immich_search.snippet_v1(text, tsquery, integer);
DROP FUNCTION immich_search.ocr_tsquery_v1(text, boolean);
DROP FUNCTION immich_search.term_tsquery_v1(text, boolean, boolean);
DROP FUNCTION immich_search.segments_v1(text);
DROP FUNCTION immich_search.word_tsquery_v1(text, boolean);
DROP FUNCTION immich_search.cjk_tsquery_v1(text);
DROP FUNCTION immich_search.fold_v1(text);
