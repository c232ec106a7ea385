-- Revision 0001 functions: the SQL query tokenizer (twin of immich_search/ranking/ocr_query.py with no
-- segmenter), snippets and the OCR ranking. Versioned names (_v1); a change adds _v2.
-- Character classes are spelled out (not \w, \s) so that they do not depend on the database locale;
-- tests/test_sql_parity.py checks they equal immich_search.tokens.CJK_CLASS and WORD_CLASS.

-- A CJK run as a tsquery: the character itself, or a <-> phrase of its overlapping bigrams.
CREATE FUNCTION immich_search.cjk_tsquery_v1(run text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN (
  SELECT '(' || string_agg(quote_literal(lexeme), ' <-> ' ORDER BY i) || ')'
  FROM (
    SELECT i, CASE WHEN char_length(run) = 1 THEN run ELSE substr(run, i, 2) END AS lexeme
    FROM generate_series(1, greatest(char_length(run) - 1, 1)) AS i
  ) AS parts
  WHERE octet_length(lexeme) <= 2046
);

-- A word as a tsquery: exact when strict, else as a prefix.
CREATE FUNCTION immich_search.word_tsquery_v1(word text, strict boolean) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN CASE
  WHEN octet_length(word) > 2046 THEN NULL
  WHEN strict THEN quote_literal(word)
  ELSE quote_literal(word) || ':*'
END;

-- Folded segments of a text: CJK runs and words, in order (twin of immich_search.tokens.segments).
CREATE FUNCTION immich_search.segments_v1(input text) RETURNS TABLE (ordinal bigint, kind text, segment text)
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT AS $$
  SELECT m.ordinal,
         CASE WHEN m.hit[1] ~ '^[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff]+$' THEN 'cjk' ELSE 'word' END,
         m.hit[1]
  FROM regexp_matches(
         replace(replace(immich_search.fold_v1(input), '''', ''), U&'\2019', ''),
         '[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002ffff]+|[0-9A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0370-\u03ff\u0400-\u04ff\u0590-\u05ff\u0600-\u06ff\u0900-\u097f\u0e00-\u0e7f\u1e00-\u1eff]+', 'g') WITH ORDINALITY AS m(hit, ordinal)
$$;

-- One query term as a tsquery text (twin of ocr_query._term_expr with no segmenter).
CREATE FUNCTION immich_search.term_tsquery_v1(term text, is_phrase boolean, strict boolean) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
  s record;
  parts text[] := '{}';
  words text[] := '{}';
  has_cjk boolean := false;
  part text;
  phrase text;
  glued text;
BEGIN
  FOR s IN SELECT * FROM immich_search.segments_v1(term) ORDER BY ordinal LOOP
    IF s.kind = 'cjk' THEN
      has_cjk := true;
      part := immich_search.cjk_tsquery_v1(s.segment);
      IF part IS NOT NULL THEN parts := parts || part; END IF;
    ELSE
      words := words || s.segment;
      IF NOT is_phrase THEN
        part := immich_search.word_tsquery_v1(s.segment, strict);
        IF part IS NOT NULL THEN parts := parts || part; END IF;
      END IF;
    END IF;
  END LOOP;
  IF is_phrase AND cardinality(words) > 0 AND NOT has_cjk THEN
    SELECT '(' || string_agg(quote_literal(w), ' <-> ' ORDER BY i) || ')' INTO phrase
      FROM unnest(words) WITH ORDINALITY AS u(w, i) WHERE octet_length(w) <= 2046;
    glued := CASE WHEN cardinality(words) > 1
                  THEN immich_search.word_tsquery_v1(array_to_string(words, ''), strict) END;
    part := CASE WHEN phrase IS NOT NULL AND glued IS NOT NULL THEN '(' || phrase || ' | ' || glued || ')'
                 ELSE coalesce(phrase, glued, '') END;
    parts := parts || part;
  ELSIF is_phrase AND cardinality(words) > 0 THEN
    FOREACH glued IN ARRAY words LOOP
      part := immich_search.word_tsquery_v1(glued, strict);
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
-- nothing can match. Twin of ocr_query.build_ocr_query(parse(query), segmenter=None). Never raises.
CREATE FUNCTION immich_search.ocr_tsquery_v1(query text, strict boolean DEFAULT false) RETURNS tsquery
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
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
      expr := immich_search.term_tsquery_v1(term, is_phrase, false);
      IF expr IS NOT NULL THEN negative := negative || expr; END IF;
      CONTINUE;
    END IF;
    n_positive := n_positive + 1;
    IF is_phrase THEN
      glue_ok := false;
    ELSE
      FOR s IN SELECT * FROM immich_search.segments_v1(term) ORDER BY ordinal LOOP
        IF s.kind = 'cjk' THEN glue_ok := false; ELSE glue_words := glue_words || s.segment; END IF;
      END LOOP;
    END IF;
    expr := immich_search.term_tsquery_v1(term, is_phrase, strict);
    IF expr IS NOT NULL THEN positive := positive || expr; END IF;
  END LOOP;
  IF cardinality(positive) = 0 THEN RETURN NULL; END IF;
  result := CASE WHEN cardinality(positive) = 1 THEN positive[1]
                 ELSE '(' || array_to_string(positive, ' & ') || ')' END;
  IF glue_ok AND cardinality(glue_words) > 1 AND n_positive > 1 THEN
    expr := immich_search.word_tsquery_v1(array_to_string(glue_words, ''), strict);
    IF expr IS NOT NULL THEN result := '(' || result || ' | ' || expr || ')'; END IF;
  END IF;
  FOREACH expr IN ARRAY negative LOOP
    result := result || ' & !' || expr;
  END LOOP;
  RETURN result::tsquery;
END
$$;

-- Up to max_lines OCR lines that contain a term of the query, joined by ' … ' (the first line when
-- none does): the snippet shown with every hit.
CREATE FUNCTION immich_search.snippet_v1(body text, query tsquery, max_lines integer DEFAULT 3) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  WITH terms AS (
    SELECT DISTINCT replace(t.hit[1], '''''', '''') AS term
    FROM regexp_matches(coalesce(query::text, ''), '''((?:[^'']|'''')+)''', 'g') AS t(hit)
  ), lines AS (
    SELECT line, n FROM unnest(string_to_array(coalesce(body, ''), E'\n')) WITH ORDINALITY AS l(line, n)
    WHERE btrim(line) <> ''
  ), hits AS (
    SELECT line, n FROM lines
    WHERE EXISTS (
      SELECT 1 FROM terms
      WHERE strpos(replace(replace(immich_search.fold_v1(lines.line), ' ', ''), '''', ''), terms.term) > 0)
    ORDER BY n LIMIT max_lines
  )
  SELECT coalesce((SELECT string_agg(line, ' … ' ORDER BY n) FROM hits),
                  (SELECT line FROM lines ORDER BY n LIMIT 1), '')
$$;

-- Assets the user may see, as Immich's smart search decides (server/src/repositories/search.repository.ts):
-- their own (timeline or archive; locked only when asked) and their partners' that are shared in
-- timeline (timeline only); never trashed.
CREATE FUNCTION immich_search.visible_assets_v1(user_id uuid, include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT a.id FROM public.asset a
  WHERE a."ownerId" = user_id AND a."deletedAt" IS NULL
    AND (a.visibility IN ('timeline', 'archive') OR (include_locked AND a.visibility = 'locked'))
  UNION ALL
  SELECT a.id FROM public.asset a
  JOIN public.partner p ON p."sharedById" = a."ownerId"
  WHERE p."sharedWithId" = user_id AND p."inTimeline" AND a."deletedAt" IS NULL
    AND a.visibility = 'timeline'
$$;

-- OCR ranking from ready-made tsqueries (the Python path builds them with jieba): loose decides what
-- matches, strict lifts exact matches; score in [0, 1]; ties broken by newest photo, then id.
CREATE FUNCTION immich_search.search_ocr_tsquery_v1(
  loose tsquery, strict tsquery, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT o.asset_id, a."originalFileName"::text, r.score::real,
         immich_search.snippet_v1(o.text, loose)
  FROM immich_search.ocr o
  JOIN public.asset a ON a.id = o.asset_id
  CROSS JOIN LATERAL (
    -- ts_rank_cd normalisation 1|32: divide by 1 + log(length), then map to rank / (rank + 1).
    SELECT 0.5 * (ts_rank_cd(o.search_vector, loose, 33)
                  + coalesce(ts_rank_cd(o.search_vector, coalesce(strict, loose), 33), 0)) AS score
  ) AS r
  WHERE loose IS NOT NULL
    AND o.search_vector @@ loose
    AND o.asset_id IN (SELECT v.asset_id FROM immich_search.visible_assets_v1(user_id, include_locked) v)
  ORDER BY r.score DESC, a."fileCreatedAt" DESC, o.asset_id
  LIMIT greatest(k, 0) OFFSET greatest("offset", 0)
$$;

-- OCR search from psql: the search-bar query language, tokenised in SQL (no Python, no zhparser).
CREATE FUNCTION immich_search.search_ocr_v1(
  query text, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.search_ocr_tsquery_v1(
    immich_search.ocr_tsquery_v1(query, false), immich_search.ocr_tsquery_v1(query, true),
    user_id, k, "offset", include_locked)
$$;

-- The stable name for psql users; follows the newest version.
CREATE FUNCTION immich_search.search_ocr(
  query text, user_id uuid, k integer DEFAULT 10, "offset" integer DEFAULT 0,
  include_locked boolean DEFAULT false)
RETURNS TABLE (asset_id uuid, original_file_name text, score real, snippet text)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.search_ocr_v1(query, user_id, k, "offset", include_locked)
$$;
