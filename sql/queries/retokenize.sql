-- Runtime queries of the re-tokenizer (immich_search/sync/retokenize.py), loaded by name.

-- name: claim_outdated_ocr
-- OCR rows tokenised by an older tokenizer, a batch at a time; rows another worker is rewriting are skipped.
SELECT asset_id, lines FROM immich_search.ocr
WHERE tokenizer_version < %(version)s
ORDER BY asset_id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: retokenize_ocr
-- Only while the row is still older: a concurrent sync may have written a newer result meanwhile.
UPDATE immich_search.ocr SET search_vector = %(search_vector)s::tsvector, tokenizer_version = %(version)s
WHERE asset_id = %(asset_id)s AND tokenizer_version < %(version)s
