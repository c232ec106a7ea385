-- Runtime queries of the reader (immich_search/ranking/), loaded by name.

-- name: search_ocr_tsquery
SELECT asset_id, original_file_name, score, snippet
FROM immich_search.search_ocr_tsquery_v3(
  %(loose)s::tsquery, %(strict)s::tsquery, %(user_id)s::uuid, %(k)s, %(offset)s, %(include_locked)s,
  immich_search.people_assets_v1(%(people)s::text[], %(person_ids)s::uuid[], %(user_id)s::uuid))

-- name: search_ocr_sql
SELECT asset_id, original_file_name, score, snippet
FROM immich_search.search_ocr_v5(%(query)s, %(user_id)s::uuid, %(k)s, %(offset)s, %(include_locked)s)

-- name: find_user
-- A user by id (as text) or e-mail, case-insensitively; Immich's deleted users excluded.
SELECT id, email, name FROM public."user"
WHERE "deletedAt" IS NULL AND (id::text = lower(%(who)s) OR lower(email) = lower(%(who)s))

-- name: list_users
SELECT id, email, name FROM public."user" WHERE "deletedAt" IS NULL ORDER BY "createdAt", email LIMIT 3

-- name: active_clip_model
SELECT value FROM immich_search.setting WHERE key = 'clip_model'

-- name: search_hybrid_tsquery
SELECT asset_id, original_file_name, score, snippet, ocr_rank, clip_rank, ocr_score, clip_score
FROM immich_search.search_hybrid_tsquery_v4(
  %(loose)s::tsquery, %(strict)s::tsquery, %(vector)s::vector, %(user_id)s::uuid, %(k)s, %(offset)s,
  %(include_locked)s, %(fusion)s, %(ocr_weight)s::real, %(clip_weight)s::real, %(candidates)s, 60, true,
  immich_search.people_assets_v1(%(people)s::text[], %(person_ids)s::uuid[], %(user_id)s::uuid))

-- name: search_hybrid_sql
SELECT asset_id, original_file_name, score, snippet, ocr_rank, clip_rank, ocr_score, clip_score
FROM immich_search.search_v5(%(query)s, %(vector)s::vector, %(user_id)s::uuid, %(k)s, %(offset)s,
                             %(include_locked)s, %(fusion)s, %(ocr_weight)s::real, %(clip_weight)s::real,
                             %(candidates)s)

-- name: has_schema_revision
-- Whether alembic's version table is there (in our schema): never migrated when not.
SELECT to_regclass('immich_search.alembic_version') IS NOT NULL

-- name: schema_revision
SELECT version_num FROM immich_search.alembic_version

-- name: search_text_tsquery
-- OCR text and/or descriptions (revision 0008): `desc:` queries, plain queries without a CLIP model.
SELECT asset_id, original_file_name, score, snippet
FROM immich_search.search_text_tsquery_v2(
  %(loose)s::tsquery, %(strict)s::tsquery, %(user_id)s::uuid, %(k)s, %(offset)s, %(include_locked)s, %(use_ocr)s,
  %(use_description)s, immich_search.people_assets_v1(%(people)s::text[], %(person_ids)s::uuid[], %(user_id)s::uuid))

-- name: search_people_photos
-- `person:张三` alone (revision 0011): the photos showing every person named, newest first.
SELECT asset_id, original_file_name
FROM immich_search.photos_with_people_v1(immich_search.people_assets_v1(%(people)s::text[], %(person_ids)s::uuid[], %(user_id)s::uuid),
                                         %(user_id)s::uuid, %(k)s, %(offset)s, %(include_locked)s)

-- name: people_named
-- The caller's people by name (revision 0011): one row per name (lower case, NFKC) and person so named, a NULL
-- person when nobody has that name.
SELECT name, person_id FROM immich_search.people_named_v1(%(people)s::text[], %(user_id)s::uuid)
