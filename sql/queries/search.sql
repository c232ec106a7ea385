-- Runtime queries of the reader (immich_search/ranking/), loaded by name.

-- name: search_ocr_tsquery
SELECT asset_id, original_file_name, score, snippet
FROM immich_search.search_ocr_tsquery(%(loose)s::tsquery, %(strict)s::tsquery, %(user_id)s::uuid,
                                      %(k)s, %(offset)s, %(include_locked)s)

-- name: search_ocr_sql
SELECT asset_id, original_file_name, score, snippet
FROM immich_search.search_ocr_v1(%(query)s, %(user_id)s::uuid, %(k)s, %(offset)s, %(include_locked)s)

-- name: find_user
-- A user by id (as text) or e-mail, case-insensitively; Immich's deleted users excluded.
SELECT id, email, name FROM public."user"
WHERE "deletedAt" IS NULL AND (id::text = lower(%(who)s) OR lower(email) = lower(%(who)s))

-- name: list_users
SELECT id, email, name FROM public."user" WHERE "deletedAt" IS NULL ORDER BY "createdAt", email LIMIT 3
