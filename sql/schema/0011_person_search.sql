-- Schema immich_search, revision 0011: `person:NAME` in search, and a filter by people on every search branch
-- (issue 17, point 4).
--
-- A query's `person:张三` / `person:"Anna Li"` terms (anywhere, several allowed) keep only photos showing every
-- person named: the caller's people (person."ownerId", as Immich shows people only to their owner), names
-- compared case-insensitively after NFKC, hidden people included (a hidden person is hidden from the people
-- list, not from a search that names them). Visible, not deleted faces only (asset_face."isVisible",
-- "deletedAt"), as Immich's own personIds filter (hasPeople in server/src/utils/database.ts). The filter is an
-- asset set (people_assets_v1) handed to new versions of every candidate function, so ranking, paging and the
-- fusion work inside the filtered set, never on a filtered page.
--
-- New: person_terms_v1, people_named_v1, people_assets_v1, photos_with_people_v1; ocr_candidates_v3,
-- description_candidates_v2, text_candidates_v2, search_clip_v3, search_ocr_tsquery_v3, search_text_tsquery_v2,
-- search_hybrid_tsquery_v4, search_ocr_v5, search_v5, ocr_tsquery_v5. The stable names search, search_ocr,
-- search_ocr_tsquery, ocr_candidates, search_clip and ocr_tsquery move to them (same signatures). The versions
-- they replace, which nothing calls any more, are dropped (0011_down.sql brings them back).

-- Bodies are strings (not BEGIN ATOMIC): a parsed body would record dependencies on Immich's tables and could
-- block Immich's own migrations of them.

-- The person terms of a query, twin of immich_search.ranking.query_language.split_people (on the capped query
-- with curly quotes straightened, as ocr_tsquery_v4 reads it): names, the non-empty names in order (a quoted
-- one without its outer white space); rest, the query without them (its mode prefix, then every other token
-- with the white space before it); has_text, whether anything but white space follows the mode prefix in rest.
CREATE FUNCTION immich_search.person_terms_v1(query text, OUT names text[], OUT rest text, OUT has_text boolean)
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  body text := translate(coalesce(immich_search.capped_query_v1(query), ''), U&'\201c\201d', '""');
  head text;
  m text[];
BEGIN
  names := '{}';
  head := coalesce(substring(body from
    '^[ \t\n\r\f\v]*(?:[Oo][Cc][Rr]|[Cc][Ll][Ii][Pp]|[Dd][Ee][Ss][Cc])[ \t\n\r\f\v]*:[ \t\n\r\f\v]*'), '');
  rest := head;
  -- PostgreSQL's regular expressions take the longest alternative where Python's take the first: the
  -- alternatives are exclusive (a word never starts where a phrase or a person term does).
  FOR m IN SELECT regexp_matches(substr(body, char_length(head) + 1),
      '([ \t\n\r\f\v]*)(?:(-?"[^"]*(?:"|$))|[Pp][Ee][Rr][Ss][Oo][Nn]:"([^"]*)(?:"|$)'
      '|[Pp][Ee][Rr][Ss][Oo][Nn]:([^ \t\n\r\f\v"][^ \t\n\r\f\v]*)'
      '|((?!-?"|[Pp][Ee][Rr][Ss][Oo][Nn]:[^ \t\n\r\f\v])-?[^ \t\n\r\f\v]+))', 'g') LOOP
    IF m[3] IS NOT NULL OR m[4] IS NOT NULL THEN
      IF coalesce(btrim(m[3], E' \t\n\r\f' || chr(11)), m[4]) <> '' THEN
        names := names || coalesce(btrim(m[3], E' \t\n\r\f' || chr(11)), m[4]);
      END IF;
      rest := rest || m[1];
    ELSE
      rest := rest || m[1] || coalesce(m[2], m[5]);
    END IF;
  END LOOP;
  has_text := substr(rest, char_length(head) + 1) ~ '[^ \t\n\r\f\v]';
END
$$;

-- The caller's people by name: one row per distinct name (lower case, NFKC) and person of user_id so named
-- (person_id NULL: nobody has that name). Hidden people count; unnamed ones ('') never match.
CREATE FUNCTION immich_search.people_named_v1(names text[], user_id uuid)
RETURNS TABLE (name text, person_id uuid)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT w.folded, p.id
  FROM (SELECT DISTINCT lower(normalize(x, NFKC)) AS folded FROM unnest(people_named_v1.names) AS x
        WHERE x <> '') AS w
  LEFT JOIN public.person AS p
    ON p."ownerId" = people_named_v1.user_id AND lower(normalize(p.name::text, NFKC)) = w.folded
  ORDER BY w.folded, p.id
$$;

-- The assets showing every person asked for: for each name (people_named_v1), a visible, not deleted face of
-- one of the caller's people so named; for each id of person_ids, a visible, not deleted face of that person
-- (Immich's hasPeople, which compares the distinct matches with the list's length as sent). NULL when nothing
-- is asked (no filter); an empty array when nobody matches. Visibility is not checked here: every search
-- branch applies can_see_v2 itself.
CREATE FUNCTION immich_search.people_assets_v1(names text[], person_ids uuid[], user_id uuid) RETURNS uuid[]
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  WITH named AS MATERIALIZED (
    SELECT * FROM immich_search.people_named_v1(people_assets_v1.names, people_assets_v1.user_id)
  ), wanted AS (
    SELECT (SELECT count(DISTINCT n.name) FROM named AS n) + coalesce(cardinality(people_assets_v1.person_ids), 0) AS n
  ), matches AS (
    SELECT f."assetId" AS asset_id, 'name:' || n.name AS key
    FROM named AS n JOIN public.asset_face AS f ON f."personId" = n.person_id
    WHERE f."isVisible" AND f."deletedAt" IS NULL
    UNION ALL
    SELECT f."assetId", 'id:' || f."personId"::text
    FROM public.asset_face AS f
    WHERE f."personId" = ANY(people_assets_v1.person_ids) AND f."isVisible" AND f."deletedAt" IS NULL
  )
  SELECT CASE WHEN w.n = 0 THEN NULL
              ELSE ARRAY(SELECT m.asset_id FROM matches AS m GROUP BY m.asset_id
                         HAVING count(DISTINCT m.key) = w.n ORDER BY m.asset_id) END
  FROM wanted AS w
$$;

-- A page of the assets of only_assets that user_id may see (can_see_v2), newest first ("fileCreatedAt", then
-- id, both descending, as photos_of_v1 and Immich's metadata search with personIds): `person:张三` alone.
CREATE FUNCTION immich_search.photos_with_people_v1(
  only_assets uuid[], user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, taken_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT a.id, a."originalFileName"::text, a."fileCreatedAt"
  FROM public.asset AS a
  WHERE a.id = ANY(photos_with_people_v1.only_assets)
    AND immich_search.can_see_v2(a."ownerId", a.visibility::text, a."deletedAt", photos_with_people_v1.user_id,
          ARRAY(SELECT pa."sharedById" FROM public.partner AS pa
                WHERE pa."sharedWithId" = photos_with_people_v1.user_id AND pa."inTimeline"),
          photos_with_people_v1.include_locked)
  ORDER BY a."fileCreatedAt" DESC, a.id DESC
  OFFSET greatest(photos_with_people_v1."offset", 0) LIMIT greatest(photos_with_people_v1.k, 0)
$$;

-- ocr_candidates_v2 restricted to only_assets (NULL: no restriction), the asset set of a person filter.
CREATE FUNCTION immich_search.ocr_candidates_v3(loose tsquery, strict tsquery, user_id uuid, k integer DEFAULT 100, include_locked boolean DEFAULT false, only_assets uuid[] DEFAULT NULL::uuid[])
 RETURNS TABLE(asset_id uuid, original_file_name text, score real)
 LANGUAGE plpgsql
 STABLE PARALLEL SAFE
AS $function$
#variable_conflict use_column
DECLARE
  wanted integer := greatest(k, 0);
  -- Partners who share with the caller in timeline (Immich's smart search rule, visible_assets_v1).
  partners uuid[] := ARRAY(SELECT p."sharedById" FROM public.partner p
                           WHERE p."sharedWithId" = user_id AND p."inTimeline");
  exact_hits integer;
  fuzzy tsquery;
BEGIN
  IF loose IS NULL OR wanted = 0 THEN
    RETURN;
  END IF;
  -- Visibility is checked on each matching row through asset's primary key, so the cost follows the
  -- matches, not the size of the caller's library (a visible-set join reads every asset the caller owns).
  -- The fuzzy fallback only runs when the exact matches do not fill the page: fuzzy hits rank below every
  -- exact one, so a page made of exact hits is the same with or without them.
  SELECT count(*) INTO exact_hits FROM (
    SELECT 1 FROM immich_search.ocr AS o JOIN public.asset AS a ON a.id = o.asset_id
    WHERE o.search_vector @@ loose
      AND immich_search.can_see_v2(a."ownerId", a.visibility::text, a."deletedAt", user_id, partners, include_locked)
        AND (only_assets IS NULL OR o.asset_id = ANY(only_assets))
    LIMIT wanted) AS x;
  IF exact_hits < wanted THEN
    -- Built once per call: in a WHERE clause it could run for every row under a generic plan.
    fuzzy := immich_search.fuzzy_tsquery_v2(loose);
  END IF;
  RETURN QUERY
    WITH hits AS (
      -- The visibility join sits inside each branch, so only visible matches are ranked.
      -- ts_rank_cd normalisation 1|32: divide by 1 + log(length), then map to rank / (rank + 1).
      SELECT o.asset_id, a."originalFileName"::text AS name, a."fileCreatedAt" AS created, 1 AS tier,
             0.5 + 0.25 * (ts_rank_cd(o.search_vector, loose, 33)
                           + coalesce(ts_rank_cd(o.search_vector, coalesce(strict, loose), 33), 0)) AS s
      FROM immich_search.ocr AS o JOIN public.asset AS a ON a.id = o.asset_id
      WHERE o.search_vector @@ loose
        AND immich_search.can_see_v2(a."ownerId", a.visibility::text, a."deletedAt", user_id, partners, include_locked)
        AND (only_assets IS NULL OR o.asset_id = ANY(only_assets))
      UNION ALL
      SELECT o.asset_id, a."originalFileName"::text, a."fileCreatedAt", 2 AS tier,
             0.5 * ts_rank_cd(o.search_vector, fuzzy, 33) AS s
      FROM immich_search.ocr AS o JOIN public.asset AS a ON a.id = o.asset_id
      WHERE fuzzy IS NOT NULL AND o.search_vector @@ fuzzy AND NOT o.search_vector @@ loose
        AND immich_search.can_see_v2(a."ownerId", a.visibility::text, a."deletedAt", user_id, partners, include_locked)
        AND (only_assets IS NULL OR o.asset_id = ANY(only_assets))
    )
    SELECT h.asset_id, h.name, h.s::real
    FROM hits AS h
    ORDER BY h.tier, h.s DESC, h.created DESC, h.asset_id
    LIMIT wanted;
END
$function$;

-- description_candidates_v1 restricted to only_assets (NULL: no restriction).
CREATE FUNCTION immich_search.description_candidates_v2(loose tsquery, strict tsquery, user_id uuid, k integer DEFAULT 100, include_locked boolean DEFAULT false, only_assets uuid[] DEFAULT NULL::uuid[])
 RETURNS TABLE(asset_id uuid, original_file_name text, score real)
 LANGUAGE sql
 STABLE PARALLEL SAFE
AS $function$
  WITH partners AS (
    SELECT ARRAY(SELECT p."sharedById" FROM public.partner p
                 WHERE p."sharedWithId" = user_id AND p."inTimeline") AS ids
  )
  SELECT d.asset_id, a."originalFileName"::text,
         (0.5 + 0.25 * (ts_rank_cd(d.search_vector, loose, 33)
                        + coalesce(ts_rank_cd(d.search_vector, coalesce(strict, loose), 33), 0)))::real
  FROM immich_search.description AS d JOIN public.asset AS a ON a.id = d.asset_id CROSS JOIN partners
  WHERE loose IS NOT NULL AND d.search_vector @@ loose
    AND immich_search.can_see_v2(a."ownerId", a.visibility::text, a."deletedAt", user_id, partners.ids, include_locked)
    AND (only_assets IS NULL OR d.asset_id = ANY(only_assets))
  ORDER BY 3 DESC, a."fileCreatedAt" DESC, d.asset_id
  LIMIT greatest(k, 0)
$function$;

-- text_candidates_v1 restricted to only_assets (NULL: no restriction).
CREATE FUNCTION immich_search.text_candidates_v2(loose tsquery, strict tsquery, user_id uuid, k integer DEFAULT 100, include_locked boolean DEFAULT false, use_ocr boolean DEFAULT true, use_description boolean DEFAULT true, only_assets uuid[] DEFAULT NULL::uuid[])
 RETURNS TABLE(asset_id uuid, original_file_name text, score real, ocr_score real, description_score real)
 LANGUAGE sql
 STABLE
AS $function$
  WITH o AS MATERIALIZED (
    SELECT c.* FROM immich_search.ocr_candidates_v3(loose, strict, user_id, k, include_locked, only_assets)
         WITH ORDINALITY AS c(asset_id, original_file_name, score, n)
    WHERE use_ocr
  ), d AS MATERIALIZED (
    SELECT c.* FROM immich_search.description_candidates_v2(loose, strict, user_id, k, include_locked, only_assets)
         WITH ORDINALITY AS c(asset_id, original_file_name, score, n)
    WHERE use_description
  )
  -- Ties keep each source's own order (newest photo first), so with no description this is exactly
  -- ocr_candidates_v3's ranking.
  SELECT coalesce(o.asset_id, d.asset_id), coalesce(o.original_file_name, d.original_file_name),
         greatest(o.score, d.score), o.score, d.score
  FROM o FULL JOIN d ON d.asset_id = o.asset_id
  ORDER BY greatest(o.score, d.score) DESC, least(o.n, d.n), coalesce(o.asset_id, d.asset_id)
  LIMIT greatest(k, 0)
$function$;

-- search_clip_v2 restricted to only_assets (NULL: no restriction), ranked exactly when given.
CREATE FUNCTION immich_search.search_clip_v3(query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0, include_locked boolean DEFAULT false, exact_limit integer DEFAULT NULL::integer, only_assets uuid[] DEFAULT NULL::uuid[])
 RETURNS TABLE(asset_id uuid, original_file_name text, score real)
 LANGUAGE plpgsql
AS $function$
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
  IF only_assets IS NOT NULL THEN
    -- A person filter: its assets (a person's photos, hundreds or thousands) ranked exactly, by primary key;
    -- the index would have to skip every other photo of the library.
    RETURN QUERY
      WITH visible AS MATERIALIZED (
        SELECT a.id AS asset_id, a."originalFileName"::text AS name FROM public.asset a
        WHERE a.id = ANY(only_assets)
          AND immich_search.can_see_v2(a."ownerId", a.visibility::text, a."deletedAt", user_id, partners, include_locked)
      ), scored AS MATERIALIZED (
        SELECT v.asset_id, v.name,
               (SELECT x.embedding FROM immich_search.clip x WHERE x.asset_id = v.asset_id) <=> query_vector AS distance
        FROM visible v
      )
      SELECT s.asset_id, s.name, (1 - s.distance)::real
      FROM scored s
      WHERE s.distance IS NOT NULL
      ORDER BY s.distance, s.asset_id
      OFFSET greatest("offset", 0) LIMIT greatest(k, 0);
    RETURN;
  END IF;
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
$function$;

-- search_ocr_tsquery_v2 restricted to only_assets (NULL: no restriction).
CREATE FUNCTION immich_search.search_ocr_tsquery_v3(loose tsquery, strict tsquery, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0, include_locked boolean DEFAULT false, only_assets uuid[] DEFAULT NULL::uuid[])
 RETURNS TABLE(asset_id uuid, original_file_name text, score real, snippet text)
 LANGUAGE plpgsql
 STABLE PARALLEL SAFE
AS $function$
#variable_conflict use_column
BEGIN
  RETURN QUERY
    WITH page AS MATERIALIZED (
      SELECT c.asset_id, c.original_file_name, c.score, c.n
      FROM immich_search.ocr_candidates_v3(loose, strict, user_id, greatest(k, 0) + greatest("offset", 0),
                                           include_locked, only_assets) WITH ORDINALITY AS c(asset_id, original_file_name, score, n)
      ORDER BY c.n OFFSET greatest("offset", 0)
    ), fuzzy AS MATERIALIZED (
      -- The fuzzy query again, once, only when the page holds a fuzzy hit (score < 0.5) to make a snippet of.
      SELECT CASE WHEN EXISTS (SELECT 1 FROM page WHERE page.score < 0.5)
                  THEN immich_search.fuzzy_tsquery_v2(loose) END AS q
    )
    SELECT p.asset_id, p.original_file_name, p.score,
           immich_search.snippet_v2(o.text, CASE WHEN p.score >= 0.5 THEN loose ELSE f.q END)
    FROM page AS p CROSS JOIN fuzzy AS f
    JOIN immich_search.ocr AS o ON o.asset_id = p.asset_id
    ORDER BY p.n;
END
$function$;

-- search_text_tsquery_v1 restricted to only_assets (NULL: no restriction).
CREATE FUNCTION immich_search.search_text_tsquery_v2(loose tsquery, strict tsquery, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0, include_locked boolean DEFAULT false, use_ocr boolean DEFAULT true, use_description boolean DEFAULT true, only_assets uuid[] DEFAULT NULL::uuid[])
 RETURNS TABLE(asset_id uuid, original_file_name text, score real, snippet text)
 LANGUAGE sql
 STABLE
AS $function$
  WITH page AS MATERIALIZED (
    SELECT c.* FROM immich_search.text_candidates_v2(loose, strict, user_id, greatest(k, 0) + greatest("offset", 0),
                                                        include_locked, use_ocr, use_description, only_assets)
         WITH ORDINALITY AS c(asset_id, original_file_name, score, ocr_score, description_score, n)
    ORDER BY n OFFSET greatest("offset", 0)
  )
  SELECT p.asset_id, p.original_file_name, p.score,
         immich_search.text_snippet_v1(
           o.text, CASE WHEN p.ocr_score >= 0.5 THEN loose
                        WHEN p.ocr_score IS NOT NULL THEN immich_search.fuzzy_tsquery_v2(loose) END,
           d.text, CASE WHEN p.description_score IS NOT NULL THEN loose END)
  FROM page AS p
  LEFT JOIN immich_search.ocr AS o ON o.asset_id = p.asset_id
  LEFT JOIN immich_search.description AS d ON d.asset_id = p.asset_id
  ORDER BY p.n
$function$;

-- search_hybrid_tsquery_v3 restricted to only_assets (NULL: no restriction); use_description false
-- ranks OCR text alone (`ocr:` queries, as search_hybrid_tsquery_v2 did).
CREATE FUNCTION immich_search.search_hybrid_tsquery_v4(loose tsquery, strict tsquery, query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0, include_locked boolean DEFAULT false, fusion text DEFAULT 'rrf'::text, ocr_weight real DEFAULT 1, clip_weight real DEFAULT 1, candidates integer DEFAULT 100, rrf_k integer DEFAULT 60, use_description boolean DEFAULT true, only_assets uuid[] DEFAULT NULL::uuid[])
 RETURNS TABLE(asset_id uuid, original_file_name text, score real, snippet text, ocr_rank integer, clip_rank integer, ocr_score real, clip_score real)
 LANGUAGE plpgsql
AS $function$
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
      SELECT o.asset_id, o.original_file_name, o.score, o.n::integer AS rank, o.ocr_s, o.desc_s
      FROM immich_search.text_candidates_v2(loose, strict, user_id, pool, include_locked, true, use_description,
                                              only_assets)
           WITH ORDINALITY AS o(asset_id, original_file_name, score, ocr_s, desc_s, n)
      WHERE ocr_weight > 0
    ), clip AS MATERIALIZED (
      SELECT c.asset_id, c.original_file_name, c.score, c.n::integer AS rank
      FROM immich_search.search_clip_v3(query_vector, user_id, pool, 0, include_locked, NULL, only_assets)
           WITH ORDINALITY AS c(asset_id, original_file_name, score, n)
      WHERE clip_weight > 0
    ), bounds AS (
      SELECT (SELECT min(score) FROM ocr) AS ocr_min, (SELECT max(score) FROM ocr) AS ocr_max,
             (SELECT min(score) FROM clip) AS clip_min, (SELECT max(score) FROM clip) AS clip_max
    ), joined AS (
      SELECT coalesce(o.asset_id, c.asset_id) AS asset_id,
             coalesce(o.original_file_name, c.original_file_name) AS original_file_name,
             o.rank AS ocr_rank, c.rank AS clip_rank, o.ocr_s, o.desc_s,
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
           CASE WHEN p.ocr_rank IS NULL THEN '' ELSE immich_search.text_snippet_v1(
             t.text, CASE WHEN p.ocr_s IS NOT NULL THEN loose END,
             d.text, CASE WHEN p.desc_s IS NOT NULL THEN loose END) END,
           p.ocr_rank, p.clip_rank, p.ocr_score, p.clip_score
    FROM page p
    LEFT JOIN immich_search.ocr t ON t.asset_id = p.asset_id
    LEFT JOIN immich_search.description d ON d.asset_id = p.asset_id
    ORDER BY p.fused DESC, least(p.ocr_rank, p.clip_rank), p.ocr_rank NULLS LAST, p.asset_id;
END
$function$;

-- ocr_tsquery_v4 of the query without its person terms (person_terms_v1): `person:张三 发票` searches the text
-- for 发票 only. Twin of ranking.ocr_query.build_ocr_query(query_language.parse(query)).
CREATE FUNCTION immich_search.ocr_tsquery_v5(query text, strict boolean DEFAULT false) RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE
RETURN immich_search.ocr_tsquery_v4((immich_search.person_terms_v1(query)).rest, strict);

-- search_ocr_v4 with person terms: the OCR ranking among the photos showing every person named; person
-- terms alone list those photos, newest first (score 1, no snippet).
CREATE FUNCTION immich_search.search_ocr_v5(
  query text, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0, include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
  terms record := immich_search.person_terms_v1(query);
  only_assets uuid[] := immich_search.people_assets_v1(terms.names, NULL, user_id);
BEGIN
  IF cardinality(terms.names) > 0 AND NOT terms.has_text THEN
    RETURN QUERY SELECT p.asset_id, p.original_file_name, 1::real, ''::text
      FROM immich_search.photos_with_people_v1(only_assets, user_id, k, "offset", include_locked) AS p;
    RETURN;
  END IF;
  RETURN QUERY SELECT * FROM immich_search.search_ocr_tsquery_v3(
    immich_search.ocr_tsquery_v4(terms.rest, false), immich_search.ocr_tsquery_v4(terms.rest, true), user_id, k,
    "offset", include_locked, only_assets);
END
$$;

-- search_v4 with person terms: every mode (`desc:`, `ocr:`, plain, `clip:`) ranks among the photos showing every
-- person named, inside each branch (the fusion and the page see only them); person terms alone list those
-- photos, newest first (score 1, no snippet, ocr_rank the position).
CREATE FUNCTION immich_search.search_v5(
  query text, query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false, fusion text DEFAULT 'rrf', ocr_weight real DEFAULT 1,
  clip_weight real DEFAULT 1, candidates integer DEFAULT 100)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text,
               ocr_rank integer, clip_rank integer, ocr_score real, clip_score real)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  terms record := immich_search.person_terms_v1(query);
  only_assets uuid[] := immich_search.people_assets_v1(terms.names, NULL, user_id);
  mode text := immich_search.query_mode_v2(terms.rest);
  body text := terms.rest;
BEGIN
  IF cardinality(terms.names) > 0 AND NOT terms.has_text THEN
    RETURN QUERY
      SELECT p.asset_id, p.original_file_name, 1::real, ''::text, (p.n + greatest("offset", 0))::integer,
             NULL::integer, NULL::real, NULL::real
      FROM immich_search.photos_with_people_v1(only_assets, user_id, k, "offset", include_locked)
           WITH ORDINALITY AS p(asset_id, original_file_name, taken_at, n)
      ORDER BY p.n;
  ELSIF mode = 'desc' THEN
    -- ocr_tsquery_v4 strips ocr: and clip: itself; desc: is stripped here.
    body := regexp_replace(body, '^[ \t\n\r\f\v]*desc[ \t\n\r\f\v]*:', '', 'i');
    RETURN QUERY
      SELECT t.asset_id, t.original_file_name, t.score, t.snippet,
             (t.n + greatest("offset", 0))::integer, NULL::integer, t.score, NULL::real
      FROM immich_search.search_text_tsquery_v2(
             immich_search.ocr_tsquery_v4(body, false), immich_search.ocr_tsquery_v4(body, true), user_id, k,
             "offset", include_locked, false, true, only_assets)
           WITH ORDINALITY AS t(asset_id, original_file_name, score, snippet, n)
      ORDER BY t.n;
  ELSE
    -- `ocr:` ranks OCR text alone, without the vector; plain and `clip:` queries the hybrid ranking whose text
    -- branch is OCR text and descriptions together (a NULL query_vector turns the vector branch off).
    RETURN QUERY SELECT * FROM immich_search.search_hybrid_tsquery_v4(
      CASE WHEN mode <> 'clip' THEN immich_search.ocr_tsquery_v4(body, false) END,
      CASE WHEN mode <> 'clip' THEN immich_search.ocr_tsquery_v4(body, true) END,
      CASE WHEN mode <> 'ocr' THEN query_vector END, user_id, k, "offset", include_locked, fusion, ocr_weight,
      clip_weight, candidates, 60, mode <> 'ocr', only_assets);
  END IF;
END
$$;

-- The psql API: the stable names follow the newest versions (same signatures: psql users' calls keep working).
CREATE OR REPLACE FUNCTION immich_search.ocr_candidates(
  loose tsquery, strict tsquery, user_id uuid, k integer DEFAULT 100, include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.ocr_candidates_v3(loose, strict, user_id, k, include_locked)
$$;

CREATE OR REPLACE FUNCTION immich_search.search_clip(
  query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real)
LANGUAGE sql AS $$
  SELECT * FROM immich_search.search_clip_v3(query_vector, user_id, k, "offset", include_locked)
$$;

CREATE OR REPLACE FUNCTION immich_search.search_ocr_tsquery(
  loose tsquery, strict tsquery, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.search_ocr_tsquery_v3(loose, strict, user_id, k, "offset", include_locked)
$$;

CREATE OR REPLACE FUNCTION immich_search.search_ocr(
  query text, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0, include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.search_ocr_v5(query, user_id, k, "offset", include_locked)
$$;

CREATE OR REPLACE FUNCTION immich_search.search(
  query text, query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false, fusion text DEFAULT 'rrf', ocr_weight real DEFAULT 1,
  clip_weight real DEFAULT 1, candidates integer DEFAULT 100)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text,
               ocr_rank integer, clip_rank integer, ocr_score real, clip_score real)
LANGUAGE sql VOLATILE AS $$
  SELECT * FROM immich_search.search_v5(query, query_vector, user_id, k, "offset", include_locked, fusion,
                                        ocr_weight, clip_weight, candidates)
$$;

CREATE OR REPLACE FUNCTION immich_search.ocr_tsquery(query text, strict boolean DEFAULT false) RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE
RETURN immich_search.ocr_tsquery_v5(query, strict);

-- Nothing calls the versions these replace any more (rule 5 of sql/README.md); 0011_down.sql brings them back.
DROP FUNCTION immich_search.search_v4(text, vector, uuid, integer, integer, boolean, text, real, real, integer);
DROP FUNCTION immich_search.search_ocr_v4(text, uuid, integer, integer, boolean);
DROP FUNCTION immich_search.search_hybrid_tsquery_v3(tsquery, tsquery, vector, uuid, integer, integer, boolean, text, real, real, integer, integer);
DROP FUNCTION immich_search.search_hybrid_tsquery_v2(tsquery, tsquery, vector, uuid, integer, integer, boolean, text, real, real, integer, integer);
DROP FUNCTION immich_search.search_text_tsquery_v1(tsquery, tsquery, uuid, integer, integer, boolean, boolean, boolean);
DROP FUNCTION immich_search.search_ocr_tsquery_v2(tsquery, tsquery, uuid, integer, integer, boolean);
DROP FUNCTION immich_search.text_candidates_v1(tsquery, tsquery, uuid, integer, boolean, boolean, boolean);
DROP FUNCTION immich_search.description_candidates_v1(tsquery, tsquery, uuid, integer, boolean);
DROP FUNCTION immich_search.ocr_candidates_v2(tsquery, tsquery, uuid, integer, boolean);
DROP FUNCTION immich_search.search_clip_v2(vector, uuid, integer, integer, boolean, integer);
