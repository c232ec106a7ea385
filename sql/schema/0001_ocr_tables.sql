-- Schema immich_search, revision 0001: OCR text, the work queue and the sync cursor.
-- Everything lives in our own schema: Immich checks its own schemas for drift at start-up.

CREATE SCHEMA IF NOT EXISTS immich_search;

-- Key/value facts about this installation (which text search parser is in use, ...).
CREATE TABLE immich_search.setting (
  key text PRIMARY KEY,
  value text NOT NULL
);

-- One row per asset with recognised text. lines: [{"text", "score", "box": [x1,y1,..,x4,y4] (0-1)}].
CREATE TABLE immich_search.ocr (
  asset_id uuid PRIMARY KEY REFERENCES public.asset (id) ON DELETE CASCADE,
  source text NOT NULL CHECK (source IN ('rapidocr', 'immich')),
  model text NOT NULL,
  lines jsonb NOT NULL DEFAULT '[]',
  text text NOT NULL DEFAULT '',
  search_vector tsvector NOT NULL DEFAULT ''::tsvector,
  tokenizer_version integer NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ocr_search_vector_idx ON immich_search.ocr USING gin (search_vector);

-- The work queue: one row per (asset, task). Workers claim with FOR UPDATE SKIP LOCKED and hold a lease;
-- an expired lease is claimed again by any worker.
CREATE TABLE immich_search.job (
  asset_id uuid NOT NULL REFERENCES public.asset (id) ON DELETE CASCADE,
  task text NOT NULL CHECK (task IN ('ocr', 'clip')),
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done', 'failed')),
  attempts integer NOT NULL DEFAULT 0,
  run_after timestamptz NOT NULL DEFAULT now(),
  lease_owner text,
  lease_expires_at timestamptz,
  last_error text,
  -- asset_file."updateId" of the preview the job was queued for: a new preview requeues the job.
  preview_update_id uuid,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (asset_id, task)
);
CREATE INDEX job_claim_idx ON immich_search.job (task, run_after) WHERE state IN ('pending', 'running');

-- Incremental discovery: the highest updateId seen, per Immich table watched.
CREATE TABLE immich_search.sync_cursor (
  name text PRIMARY KEY,
  update_id uuid NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- The text search configuration: zhparser where the extension is installed (into our schema, so
-- Immich's public schema is untouched), otherwise a copy of 'simple' (Python does the Chinese
-- segmentation with jieba and CJK bigrams, see immich_search/tokens.py).
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'zhparser') THEN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'zhparser') THEN
      CREATE EXTENSION zhparser SCHEMA immich_search;
    END IF;
    EXECUTE format('CREATE TEXT SEARCH CONFIGURATION immich_search.zh (PARSER = %s)',
      (SELECT quote_ident(n.nspname) || '.zhparser'
         FROM pg_ts_parser p JOIN pg_namespace n ON n.oid = p.prsnamespace
        WHERE p.prsname = 'zhparser' LIMIT 1));
    -- zhparser token types (SCWS part-of-speech letters): every type that carries text in OCR'd
    -- photos, not only n, v, a, i, e, l: nouns and names (n, nr, ns, nt, nz map to n), verbs,
    -- adjectives, idioms, abbreviations, numerals (m), quantifiers (q), time (t), places (s, f),
    -- foreign words and letters (x, by SCWS's convention), and the rest (b, c, d, g, h, j, k, o, p, r,
    -- u, w, y, z) so that nothing recognised is dropped.
    ALTER TEXT SEARCH CONFIGURATION immich_search.zh ADD MAPPING FOR
      a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p, q, r, s, t, u, v, w, x, y, z WITH simple;
    INSERT INTO immich_search.setting VALUES ('text_search_parser', 'zhparser');
  ELSE
    CREATE TEXT SEARCH CONFIGURATION immich_search.zh (COPY = pg_catalog.simple);
    INSERT INTO immich_search.setting VALUES ('text_search_parser', 'jieba');
  END IF;
END
$$;
