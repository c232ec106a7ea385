-- Schema immich_search, revision 0008: photo descriptions from a vision LLM (issue 18), a third task of the
-- sync queue. Nothing here touches Immich's tables: descriptions written into Immich go through its API.

-- The queue knows a third task.
ALTER TABLE immich_search.job DROP CONSTRAINT job_task_check;
ALTER TABLE immich_search.job ADD CONSTRAINT job_task_check CHECK (task IN ('ocr', 'clip', 'describe'));

-- One description per asset: what the vision model said of its current preview, which model and which host
-- answered and when, folded and tokenised like OCR text (search_vector, tokenizer_version as immich_search.ocr).
CREATE TABLE immich_search.description (
  asset_id uuid PRIMARY KEY REFERENCES public.asset (id) ON DELETE CASCADE,
  text text NOT NULL,
  model text NOT NULL,
  host text NOT NULL,
  search_vector tsvector NOT NULL,
  tokenizer_version integer NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX description_search_vector_idx ON immich_search.description USING gin (search_vector);

-- requeue_v1 with the describe task: tasks 'ocr', 'clip' and/or 'describe'; NULL means 'ocr', plus 'clip'
-- when a CLIP model is configured, plus 'describe' when a sync has described photos (setting
-- 'describe_model'). Otherwise as requeue_v1: queued at the head of the queue, a running job loses its
-- lease, assets that do not exist are skipped, an unknown task raises. Returns the number of jobs queued.
CREATE FUNCTION immich_search.requeue_v2(asset_ids uuid[], tasks text[] DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  wanted text[] := coalesce(tasks, ARRAY['ocr']
    || CASE WHEN EXISTS (SELECT 1 FROM immich_search.setting WHERE key = 'clip_model')
            THEN ARRAY['clip'] ELSE ARRAY[]::text[] END
    || CASE WHEN EXISTS (SELECT 1 FROM immich_search.setting WHERE key = 'describe_model')
            THEN ARRAY['describe'] ELSE ARRAY[]::text[] END);
  bad text;
  queued integer;
BEGIN
  SELECT t INTO bad FROM unnest(wanted) AS t WHERE t IS NULL OR t NOT IN ('ocr', 'clip', 'describe') LIMIT 1;
  IF FOUND THEN
    RAISE EXCEPTION 'requeue_v2: unknown task %, expected ocr, clip or describe', coalesce(quote_literal(bad), 'NULL');
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

-- The stable name follows the newest version (same signature: psql users' calls keep working).
CREATE OR REPLACE FUNCTION immich_search.requeue(asset_ids uuid[], tasks text[] DEFAULT NULL) RETURNS integer
LANGUAGE sql AS $$ SELECT immich_search.requeue_v2(asset_ids, tasks) $$;

-- Nothing calls requeue_v1 any more (rule 5 of sql/README.md); 0008_down.sql brings it back.
DROP FUNCTION immich_search.requeue_v1(uuid[], text[]);

-- ---------------------------------------------------------------------------------------------------------
-- Searching descriptions. Existing functions are untouched: the text branch that also reads descriptions is
-- a new version of the hybrid ranking (search_hybrid_tsquery_v3), and psql's search gets search_v4 (below);
-- search_ocr_v4 (`ocr:`) keeps ranking OCR text only.

-- Ranked descriptions of the caller's visible assets (no snippets), as ocr_candidates_v2 ranks OCR text:
-- scores in [0.5, 1) from the loose and strict tsqueries; no fuzzy fallback (a description is the model's
-- spelling, never a misread). Ties broken by newest photo, then id.
CREATE FUNCTION immich_search.description_candidates_v1(
  loose tsquery, strict tsquery, user_id uuid, k integer DEFAULT 100, include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
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
  ORDER BY 3 DESC, a."fileCreatedAt" DESC, d.asset_id
  LIMIT greatest(k, 0)
$$;

-- The text branch over OCR text and descriptions together: per asset the better of its OCR score
-- (ocr_candidates_v2, with its fuzzy tier below 0.5) and its description score; which of the two matched
-- is returned (ocr_score, description_score). use_ocr / use_description turn a source off (`desc:` queries
-- read descriptions only).
CREATE FUNCTION immich_search.text_candidates_v1(
  loose tsquery, strict tsquery, user_id uuid, k integer DEFAULT 100, include_locked boolean DEFAULT false,
  use_ocr boolean DEFAULT true, use_description boolean DEFAULT true)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, ocr_score real, description_score real)
LANGUAGE sql STABLE AS $$
  WITH o AS MATERIALIZED (
    SELECT c.* FROM immich_search.ocr_candidates_v2(loose, strict, user_id, k, include_locked)
         WITH ORDINALITY AS c(asset_id, original_file_name, score, n)
    WHERE use_ocr
  ), d AS MATERIALIZED (
    SELECT c.* FROM immich_search.description_candidates_v1(loose, strict, user_id, k, include_locked)
         WITH ORDINALITY AS c(asset_id, original_file_name, score, n)
    WHERE use_description
  )
  -- Ties keep each source's own order (newest photo first), so with no description this is exactly
  -- ocr_candidates_v2's ranking.
  SELECT coalesce(o.asset_id, d.asset_id), coalesce(o.original_file_name, d.original_file_name),
         greatest(o.score, d.score), o.score, d.score
  FROM o FULL JOIN d ON d.asset_id = o.asset_id
  ORDER BY greatest(o.score, d.score) DESC, least(o.n, d.n), coalesce(o.asset_id, d.asset_id)
  LIMIT greatest(k, 0)
$$;

-- The snippet of a text hit, saying which part matched: the matching OCR lines, then the description
-- prefixed with "description: " when it matched too (or alone). ocr_query is the tsquery the OCR text
-- matched (loose, or for a fuzzy OCR hit the fuzzy one); NULL parts are left out.
CREATE FUNCTION immich_search.text_snippet_v1(
  ocr_text text, ocr_query tsquery, description_text text, description_query tsquery) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT coalesce(concat_ws(' | ',
    CASE WHEN ocr_query IS NOT NULL AND ocr_text IS NOT NULL THEN immich_search.snippet_v2(ocr_text, ocr_query) END,
    CASE WHEN description_query IS NOT NULL AND description_text IS NOT NULL
         THEN 'description: ' || immich_search.snippet_v2(description_text, description_query, 1) END), '')
$$;

-- A page of text hits (OCR text and/or descriptions) with snippets: `desc:` queries, and plain queries
-- without a CLIP model.
CREATE FUNCTION immich_search.search_text_tsquery_v1(
  loose tsquery, strict tsquery, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false, use_ocr boolean DEFAULT true, use_description boolean DEFAULT true)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE sql STABLE AS $$
  WITH page AS MATERIALIZED (
    SELECT c.* FROM immich_search.text_candidates_v1(loose, strict, user_id, greatest(k, 0) + greatest("offset", 0),
                                                        include_locked, use_ocr, use_description)
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
$$;

-- search_hybrid_tsquery_v2 whose text branch is text_candidates_v1: OCR text and descriptions together
-- (ocr_rank, ocr_score are then the text branch's: the better of the two), snippets saying which matched.
CREATE FUNCTION immich_search.search_hybrid_tsquery_v3(
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
      SELECT o.asset_id, o.original_file_name, o.score, o.n::integer AS rank, o.ocr_s, o.desc_s
      FROM immich_search.text_candidates_v1(loose, strict, user_id, pool, include_locked)
           WITH ORDINALITY AS o(asset_id, original_file_name, score, ocr_s, desc_s, n)
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
$$;

-- ---------------------------------------------------------------------------------------------------------
-- The psql path reads descriptions too. query_mode_v1 knows ocr: and clip: only; query_mode_v2 also desc:
-- (the twin of ranking.query_language.mode_prefix).
CREATE FUNCTION immich_search.query_mode_v2(query text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN coalesce(lower(substring(normalize(coalesce(query, ''), NFKC)
                                from '^[ \t\n\r\f\v]*([Oo][Cc][Rr]|[Cc][Ll][Ii][Pp]|[Dd][Ee][Ss][Cc])[ \t\n\r\f\v]*:')),
                'hybrid');

-- search_v3 that ranks descriptions as the CLI does: `desc:` reads descriptions only (search_text_tsquery_v1;
-- ocr_rank/ocr_score are then the description's), `ocr:` OCR text only (search_hybrid_tsquery_v2 without a
-- vector), plain and `clip:` queries the hybrid ranking whose text branch is OCR text and descriptions
-- together (search_hybrid_tsquery_v3; a NULL query_vector turns the vector branch off).
CREATE FUNCTION immich_search.search_v4(
  query text, query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false, fusion text DEFAULT 'rrf', ocr_weight real DEFAULT 1,
  clip_weight real DEFAULT 1, candidates integer DEFAULT 100)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text,
               ocr_rank integer, clip_rank integer, ocr_score real, clip_score real)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  mode text := immich_search.query_mode_v2(query);
  body text := query;
BEGIN
  IF mode = 'desc' THEN
    -- ocr_tsquery_v4 strips ocr: and clip: itself; desc: is stripped here.
    body := regexp_replace(normalize(coalesce(query, ''), NFKC), '^[ \t\n\r\f\v]*desc[ \t\n\r\f\v]*:', '', 'i');
    RETURN QUERY
      SELECT t.asset_id, t.original_file_name, t.score, t.snippet,
             (t.n + greatest("offset", 0))::integer, NULL::integer, t.score, NULL::real
      FROM immich_search.search_text_tsquery_v1(
             immich_search.ocr_tsquery_v4(body, false), immich_search.ocr_tsquery_v4(body, true), user_id, k,
             "offset", include_locked, false, true) WITH ORDINALITY AS t(asset_id, original_file_name, score, snippet, n)
      ORDER BY t.n;
  ELSIF mode = 'ocr' THEN
    RETURN QUERY SELECT * FROM immich_search.search_hybrid_tsquery_v2(
      immich_search.ocr_tsquery_v4(query, false), immich_search.ocr_tsquery_v4(query, true), NULL::vector,
      user_id, k, "offset", include_locked, fusion, ocr_weight, clip_weight, candidates);
  ELSE
    RETURN QUERY SELECT * FROM immich_search.search_hybrid_tsquery_v3(
      CASE WHEN mode <> 'clip' THEN immich_search.ocr_tsquery_v4(query, false) END,
      CASE WHEN mode <> 'clip' THEN immich_search.ocr_tsquery_v4(query, true) END,
      query_vector, user_id, k, "offset", include_locked, fusion, ocr_weight, clip_weight, candidates);
  END IF;
END
$$;

CREATE OR REPLACE FUNCTION immich_search.search(
  query text, query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false, fusion text DEFAULT 'rrf', ocr_weight real DEFAULT 1,
  clip_weight real DEFAULT 1, candidates integer DEFAULT 100)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text,
               ocr_rank integer, clip_rank integer, ocr_score real, clip_score real)
LANGUAGE sql VOLATILE AS $$
  SELECT * FROM immich_search.search_v4(query, query_vector, user_id, k, "offset", include_locked, fusion,
                                        ocr_weight, clip_weight, candidates)
$$;

-- Nothing calls search_v3 and query_mode_v1 any more (rule 5 of sql/README.md); 0008_down.sql brings them back.
DROP FUNCTION immich_search.search_v3(text, vector, uuid, integer, integer, boolean, text, real, real, integer);
DROP FUNCTION immich_search.query_mode_v1(text);
