-- Schema immich_search, revision 0007 (issue 16): which OCR engine read each row, and sharper `ocr:` matching.
--
-- * immich_search.ocr.engine: the engine that read the row (immich_search/ocr/registry.py: rapidocr-v4,
--   faster-paddle-tiny, ...; 'immich' for Immich's own OCR); model keeps the model and package versions. Rows
--   written before this revision were all read by RapidOCR 1.x (PP-OCRv4) or taken from Immich.
-- * A CJK run of the query cut by jieba into single characters only (a word jieba does not know, such as
--   包邮) must match as the run, not as characters anywhere in the photo: cjk_words_v3 keeps such a run
--   whole (twin of ocr_query.query_units); term_tsquery_v3, ocr_tsquery_v4 (on the capped query,
--   capped_query_v1), search_ocr_v4 and search_v3 use it. The stable names ocr_tsquery, search_ocr and
--   search move to them; search_v2, search_ocr_v3 and ocr_tsquery_v3 (0005) and the ocr_tsquery_v2 and
--   term_tsquery_v2 they called (0003), which nothing calls any more, are dropped (0007_down.sql brings them
--   back).

ALTER TABLE immich_search.ocr ADD COLUMN engine text;
UPDATE immich_search.ocr SET engine = CASE WHEN source = 'immich' THEN 'immich' ELSE 'rapidocr-v4' END;
ALTER TABLE immich_search.ocr ALTER COLUMN engine SET NOT NULL;

-- The words of a folded CJK run (cjk_words_v2, jieba's cut), except that a run cut into single characters
-- only is one word, the run itself: its characters apart are no evidence of it.
CREATE FUNCTION immich_search.cjk_words_v3(run text) RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL SAFE STRICT AS $$
DECLARE
  words text[] := immich_search.cjk_words_v2(run);
BEGIN
  IF cardinality(words) > 1 AND NOT EXISTS (SELECT 1 FROM unnest(words) AS w WHERE char_length(w) <> 1) THEN
    RETURN ARRAY[array_to_string(words, '')];
  END IF;
  RETURN words;
END
$$;

-- term_tsquery_v2 with cjk_words_v3 (twin of ocr_query._term_expr with jieba's segmenter).
CREATE FUNCTION immich_search.term_tsquery_v3(term text, is_phrase boolean, strict boolean) RETURNS text
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
  s record;
  parts text[] := '{}';
  words text[] := '{}';
  has_cjk boolean := false;
  unit text;
  unit_parts text[];
  part text;
  phrase text;
  glued text;
BEGIN
  FOR s IN SELECT * FROM immich_search.segments_v2(term) ORDER BY ordinal LOOP
    IF s.kind = 'cjk' THEN
      has_cjk := true;
      unit_parts := '{}';
      FOREACH unit IN ARRAY CASE WHEN is_phrase THEN ARRAY[s.segment]
                                 ELSE immich_search.cjk_words_v3(s.segment) END LOOP
        part := immich_search.cjk_tsquery_v2(unit);
        IF part IS NOT NULL THEN unit_parts := unit_parts || part; END IF;
      END LOOP;
      -- The whole run as a phrase too: no other matches, but it ranks the run as typed first and gives
      -- fuzzy_tsquery_v2 the run.
      part := immich_search.cjk_tsquery_v2(s.segment);
      IF cardinality(unit_parts) > 1 AND part IS NOT NULL THEN
        unit_parts := ARRAY['(' || array_to_string(unit_parts, ' & ') || ' | ' || part || ')'];
      END IF;
      parts := parts || unit_parts;
    ELSE
      words := words || s.segment;
      IF NOT is_phrase THEN
        part := immich_search.word_tsquery_v2(s.segment, strict);
        IF part IS NOT NULL THEN parts := parts || part; END IF;
      END IF;
    END IF;
  END LOOP;
  IF is_phrase AND cardinality(words) > 0 AND NOT has_cjk THEN
    SELECT '(' || string_agg(quote_literal(w), ' <-> ' ORDER BY i) || ')' INTO phrase
      FROM unnest(words) WITH ORDINALITY AS u(w, i) WHERE octet_length(w) <= 2046;
    glued := CASE WHEN cardinality(words) > 1
                  THEN immich_search.word_tsquery_v2(array_to_string(words, ''), strict) END;
    part := CASE WHEN phrase IS NOT NULL AND glued IS NOT NULL THEN '(' || phrase || ' | ' || glued || ')'
                 ELSE coalesce(phrase, glued, '') END;
    parts := parts || part;
  ELSIF is_phrase AND cardinality(words) > 0 THEN
    FOREACH glued IN ARRAY words LOOP
      part := immich_search.word_tsquery_v2(glued, strict);
      IF part IS NOT NULL THEN parts := parts || part; END IF;
    END LOOP;
  END IF;
  parts := array_remove(parts, '');
  IF cardinality(parts) = 0 THEN RETURN NULL; END IF;
  IF cardinality(parts) = 1 THEN RETURN parts[1]; END IF;
  RETURN '(' || array_to_string(parts, ' & ') || ')';
END
$$;

-- ocr_tsquery_v3 (ocr_tsquery_v2 on the query capped by capped_query_v1) with term_tsquery_v3 (twin of
-- ocr_query.build_ocr_query(parse(capped(query)), jieba_segmenter())).
CREATE FUNCTION immich_search.ocr_tsquery_v4(query text, strict boolean DEFAULT false) RETURNS tsquery
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
  body text := translate(normalize(coalesce(immich_search.capped_query_v1(query), ''), NFKC), U&'\201c\201d', '""');
  m text[];
  term text;
  is_phrase boolean;
  is_negated boolean;
  expr text;
  positive text[] := '{}';
  negative text[] := '{}';
  n_positive integer := 0;
  glue_words text[] := '{}';
  glue_ok boolean := true;
  s record;
  result text;
BEGIN
  body := regexp_replace(body, '^[ \t\n\r\f\v]*(ocr|clip)[ \t\n\r\f\v]*:[ \t\n\r\f\v]*', '', 'i');
  -- PostgreSQL's regular expressions take the longest alternative where Python's take the first; the
  -- lookahead keeps a word from starting where a quote term starts ('"a"b' is the phrase a, then b).
  FOR m IN SELECT regexp_matches(body, '(-?)"([^"]*)(?:"|$)|(?!-?")(-?)([^ \t\n\r\f\v]+)', 'g') LOOP
    IF m[2] IS NOT NULL THEN
      term := btrim(m[2], E' \t\n\r\f' || chr(11));
      is_phrase := true;
      is_negated := m[1] = '-';
      CONTINUE WHEN term = '';
    ELSE
      term := m[4];
      is_phrase := false;
      is_negated := m[3] = '-';
      CONTINUE WHEN is_negated AND term IN ('-', '');
    END IF;
    IF is_negated THEN
      expr := immich_search.term_tsquery_v3(term, is_phrase, false);
      IF expr IS NOT NULL THEN negative := negative || expr; END IF;
      CONTINUE;
    END IF;
    n_positive := n_positive + 1;
    IF is_phrase THEN
      glue_ok := false;
    ELSE
      FOR s IN SELECT * FROM immich_search.segments_v2(term) ORDER BY ordinal LOOP
        IF s.kind = 'cjk' THEN glue_ok := false; ELSE glue_words := glue_words || s.segment; END IF;
      END LOOP;
    END IF;
    expr := immich_search.term_tsquery_v3(term, is_phrase, strict);
    IF expr IS NOT NULL THEN positive := positive || expr; END IF;
  END LOOP;
  IF cardinality(positive) = 0 THEN RETURN NULL; END IF;
  result := CASE WHEN cardinality(positive) = 1 THEN positive[1]
                 ELSE '(' || array_to_string(positive, ' & ') || ')' END;
  IF glue_ok AND cardinality(glue_words) > 1 AND n_positive > 1 THEN
    expr := immich_search.word_tsquery_v2(array_to_string(glue_words, ''), strict);
    IF expr IS NOT NULL THEN result := '(' || result || ' | ' || expr || ')'; END IF;
  END IF;
  FOREACH expr IN ARRAY negative LOOP
    result := result || ' & !' || expr;
  END LOOP;
  RETURN result::tsquery;
END
$$;

-- search_ocr_v3 with ocr_tsquery_v4.
CREATE FUNCTION immich_search.search_ocr_v4(
  query text, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
  loose_query tsquery := immich_search.ocr_tsquery_v4(query, false);
  strict_query tsquery := immich_search.ocr_tsquery_v4(query, true);
BEGIN
  RETURN QUERY SELECT * FROM immich_search.search_ocr_tsquery_v2(loose_query, strict_query, user_id, k, "offset",
                                                                include_locked);
END
$$;

-- search_v2 with ocr_tsquery_v4: the hybrid search from psql, its text branch as `ocr:` reads it.
CREATE FUNCTION immich_search.search_v3(
  query text, query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false, fusion text DEFAULT 'rrf', ocr_weight real DEFAULT 1,
  clip_weight real DEFAULT 1, candidates integer DEFAULT 100)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text,
               ocr_rank integer, clip_rank integer, ocr_score real, clip_score real)
LANGUAGE sql VOLATILE AS $$
  SELECT h.* FROM (SELECT immich_search.query_mode_v1(query) AS mode) AS m
  CROSS JOIN LATERAL immich_search.search_hybrid_tsquery_v2(
    CASE WHEN m.mode <> 'clip' THEN immich_search.ocr_tsquery_v4(query, false) END,
    CASE WHEN m.mode <> 'clip' THEN immich_search.ocr_tsquery_v4(query, true) END,
    CASE WHEN m.mode <> 'ocr' THEN query_vector END,
    user_id, k, "offset", include_locked, fusion, ocr_weight, clip_weight, candidates) AS h
$$;

-- The stable names follow the newest versions.
CREATE OR REPLACE FUNCTION immich_search.ocr_tsquery(query text, strict boolean DEFAULT false) RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE
RETURN immich_search.ocr_tsquery_v4(query, strict);

CREATE OR REPLACE FUNCTION immich_search.search_ocr(
  query text, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.search_ocr_v4(query, user_id, k, "offset", include_locked)
$$;

CREATE OR REPLACE FUNCTION immich_search.search(
  query text, query_vector vector, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false, fusion text DEFAULT 'rrf', ocr_weight real DEFAULT 1,
  clip_weight real DEFAULT 1, candidates integer DEFAULT 100)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text,
               ocr_rank integer, clip_rank integer, ocr_score real, clip_score real)
LANGUAGE sql VOLATILE AS $$
  SELECT * FROM immich_search.search_v3(query, query_vector, user_id, k, "offset", include_locked, fusion,
                                        ocr_weight, clip_weight, candidates)
$$;

-- Superseded versions that nothing calls any more (runtime queries call search_ocr_v4 and search_v3). Callers
-- first.
DROP FUNCTION immich_search.search_v2(text, vector, uuid, integer, integer, boolean, text, real, real, integer);
DROP FUNCTION immich_search.search_ocr_v3(text, uuid, integer, integer, boolean);
DROP FUNCTION immich_search.ocr_tsquery_v3(text, boolean);
DROP FUNCTION immich_search.ocr_tsquery_v2(text, boolean);
DROP FUNCTION immich_search.term_tsquery_v2(text, boolean, boolean);
