-- Schema immich_search, revision 0010: descriptions written into Immich's own description field (issue 18,
-- `sync --write-immich missing|all`). The write itself goes through Immich's API (PUT /api/assets/{id})
-- with the owner's API key; nothing here touches Immich's tables. This table is our record of it, so that
-- `missing` recognises our own text (replaceable by a newer description) and never a person's.

-- One row per asset we wrote, or tried to write, a description for.
--   written_text: the text we last put into Immich (NULL: never written); written_sha256 its SHA-256
--     (UTF-8), written_at when, written_by the owner (Immich user id) whose key wrote it.
--   last_outcome: what the last try did: written (PUT done), unchanged (Immich had exactly our text), kept
--     (`missing` left a person's text alone), locked (a photo in the locked folder, which an API key may not
--     change), failed (the write failed: see last_error).
--   pending_preview_update_id: not NULL while the stored description (immich_search.description), made
--     from the preview with this "updateId", still has to be written (the last try failed): a retried
--     describe job then writes it without asking the vision model again. last_error says why it failed,
--     last_attempt_at when.
CREATE TABLE immich_search.immich_description (
  asset_id uuid PRIMARY KEY REFERENCES public.asset (id) ON DELETE CASCADE,
  written_text text,
  written_sha256 bytea,
  written_at timestamptz,
  written_by uuid,
  last_outcome text NOT NULL CHECK (last_outcome IN ('written', 'unchanged', 'kept', 'locked', 'failed')),
  pending_preview_update_id uuid,
  last_error text,
  last_attempt_at timestamptz
);
