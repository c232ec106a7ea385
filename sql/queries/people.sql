-- Queries of `immich-search people` (immich_search/people.py). Versioned names only (sql/README.md).

-- name: people_in_asset
-- The faces of one asset the caller may see, with their people (left to right).
SELECT face_id, person_id, name, is_hidden, birth_date, x1, y1, x2, y2, image_width, image_height
FROM immich_search.people_in_v1(%(asset_id)s, %(user_id)s, %(include_hidden)s)

-- name: photos_of_person
-- Up to k photos of a person the caller may see, newest first, other than the asset asked about.
SELECT asset_id, original_file_name, taken_at
FROM immich_search.photos_of_v1(%(person_id)s, %(user_id)s, %(k)s + 1)
WHERE asset_id IS DISTINCT FROM %(exclude)s::uuid
LIMIT %(k)s

-- name: nearest_person
-- The caller's person nearest to a face embedding within Immich's distance threshold, with that person.
SELECT n.person_id, n.distance, p.name, p."isHidden", p."birthDate"
FROM immich_search.nearest_person_v1(%(embedding)s::vector, %(user_id)s::uuid, %(max_distance)s::real) AS n
JOIN public.person p ON p.id = n.person_id

-- name: asset_of_user_by_checksum
-- An asset the caller may see with this SHA-1 checksum (a file given on the command line that is already in
-- the library), the caller's own first.
SELECT a.id FROM public.asset a
WHERE a.checksum = %(checksum)s AND a."deletedAt" IS NULL
ORDER BY (a."ownerId" = %(user_id)s) DESC, a."createdAt"
LIMIT 1

-- name: asset_visible_to
-- Whether the caller may see an asset (can_see_v2, never locked), to tell a photo with no face from one
-- the caller may not see.
SELECT EXISTS (
  SELECT 1 FROM public.asset a
  WHERE a.id = %(asset_id)s
    AND immich_search.can_see_v2(a."ownerId", a.visibility::text, a."deletedAt", %(user_id)s,
          ARRAY(SELECT pa."sharedById" FROM public.partner pa
                WHERE pa."sharedWithId" = %(user_id)s AND pa."inTimeline"), false))
