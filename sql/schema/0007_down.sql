-- Revision 0007 down: back to what 0006 left: 0003's ocr_tsquery_v2 and term_tsquery_v2, 0005's search_v2,
-- search_ocr_v3 and ocr_tsquery_v3, the stable names on them; everything 0007 added goes.

-- 0003's tokenizer, as 0003 created it.
-- One query term as a tsquery text (twin of ocr_query._term_expr with jieba's segmenter).
CREATE FUNCTION immich_search.term_tsquery_v2(term text, is_phrase boolean, strict boolean) RETURNS text
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
                                 ELSE immich_search.cjk_words_v2(s.segment) END LOOP
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

-- The search-bar query language (ocr:/clip: prefix, "phrases", -exclusions) as a tsquery; NULL when
-- nothing can match. Twin of ocr_query.build_ocr_query(parse(query), jieba_segmenter()). Never raises.
CREATE FUNCTION immich_search.ocr_tsquery_v2(query text, strict boolean DEFAULT false) RETURNS tsquery
LANGUAGE plpgsql STABLE PARALLEL SAFE AS $$
DECLARE
  body text := translate(normalize(coalesce(query, ''), NFKC), U&'\201c\201d', '""');
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
      expr := immich_search.term_tsquery_v2(term, is_phrase, false);
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
    expr := immich_search.term_tsquery_v2(term, is_phrase, strict);
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

-- The SQL query tokenizer on the capped query.
CREATE FUNCTION immich_search.ocr_tsquery_v3(query text, strict boolean DEFAULT false) RETURNS tsquery
LANGUAGE sql STABLE PARALLEL SAFE
RETURN immich_search.ocr_tsquery_v2(immich_search.capped_query_v1(query), strict);

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

DROP FUNCTION immich_search.search_v3(text, vector, uuid, integer, integer, boolean, text, real, real, integer);
DROP FUNCTION immich_search.search_ocr_v4(text, uuid, integer, integer, boolean);
DROP FUNCTION immich_search.ocr_tsquery_v4(text, boolean);
DROP FUNCTION immich_search.term_tsquery_v3(text, boolean, boolean);
DROP FUNCTION immich_search.cjk_words_v3(text);
ALTER TABLE immich_search.ocr DROP COLUMN engine;
