-- Runtime queries of `immich-search serve` (immich_search/serve/pages.py), loaded by name.

-- name: serve_ocr_page
-- One page of an OCR search as Immich v3.1's own search endpoints answer it: each row one
-- AssetResponseDto, built as mapAsset(asset, {auth}) builds it from searchAssetBuilderLegacy's columns
-- (server/src/dtos/asset-response.dto.ts, server/src/queries/search.repository.sql): no owner, tags or
-- stack, people [], dates as Date.toISOString() (milliseconds, UTC), checksum and thumbhash in base64,
-- isFavorite only for the owner. exif is mapExif(to_json(asset_exif)) (dates as PostgreSQL writes them
-- in JSON, as in Immich's own answer); originalMimeType is added in Python (Immich's mime table).
-- Rank order comes from immich_search.ocr_candidates_v3 (which already applies Immich's visibility rules
-- for the caller) among the photos of the query's person: terms and the request's personIds
-- (people_assets_v1, revision 0011: in the ranking, so a page is never cut short by them); person terms
-- alone (no tsquery) list those photos newest first (photos_with_people_v1). The request's other filters
-- are applied here, as searchAssetBuilderLegacy applies them.
-- A NULL parameter is "no filter"; the *_set flags tell "filter on NULL" (city: null) from "no filter".
-- With %(ids)s given instead of tsqueries, the rows are those assets, in that order (the same items for
-- any asset, which the parity test compares with Immich's own answer for every asset).
WITH people AS MATERIALIZED (
  SELECT immich_search.people_assets_v1(%(people)s::text[], %(person_ids)s::uuid[], %(user_id)s::uuid) AS only
),
ranked AS (
  SELECT c.asset_id, c.ord
  FROM people CROSS JOIN LATERAL immich_search.ocr_candidates_v3(
         %(loose)s::tsquery, %(strict)s::tsquery, %(user_id)s::uuid, %(k)s, false, people.only)
       WITH ORDINALITY AS c(asset_id, original_file_name, score, ord)
  WHERE %(ids)s::uuid[] IS NULL AND %(loose)s::tsquery IS NOT NULL
  UNION ALL
  SELECT p.asset_id, p.ord
  FROM people CROSS JOIN LATERAL immich_search.photos_with_people_v1(people.only, %(user_id)s::uuid, %(k)s, 0, false)
       WITH ORDINALITY AS p(asset_id, original_file_name, taken_at, ord)
  WHERE %(ids)s::uuid[] IS NULL AND %(loose)s::tsquery IS NULL
  UNION ALL
  SELECT i.asset_id, i.ord FROM unnest(%(ids)s::uuid[]) WITH ORDINALITY AS i(asset_id, ord)
),
partners AS (  -- who shares with the caller in timeline (Immich's getMyPartnerIds, timelineEnabled)
  SELECT array_agg(p."sharedById") AS ids FROM public.partner AS p
  WHERE p."sharedWithId" = %(user_id)s::uuid AND p."inTimeline"
)
SELECT a."originalFileName",
       json_build_object(
         'id', a.id,
         'createdAt', to_char(a."createdAt" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
         'ownerId', a."ownerId",
         'libraryId', a."libraryId",
         'type', a.type,
         'originalPath', a."originalPath",
         'originalFileName', a."originalFileName",
         'thumbhash', replace(encode(a.thumbhash, 'base64'), E'\n', ''),
         'fileCreatedAt', to_char(a."fileCreatedAt" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
         'fileModifiedAt', to_char(a."fileModifiedAt" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
         'localDateTime', to_char(a."localDateTime" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
         'updatedAt', to_char(a."updatedAt" AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
         'isFavorite', a."ownerId" = %(user_id)s::uuid AND a."isFavorite",
         'isArchived', a.visibility::text = 'archive',
         'isTrashed', a."deletedAt" IS NOT NULL,
         'visibility', a.visibility,
         'duration', a.duration,
         'livePhotoVideoId', a."livePhotoVideoId",
         'people', '[]'::json,
         'checksum', replace(encode(a.checksum, 'base64'), E'\n', ''),
         'isOffline', a."isOffline",
         'hasMetadata', true,
         'duplicateId', a."duplicateId",
         'resized', true,
         'width', a.width,
         'height', a.height,
         'isEdited', a."isEdited"
       ) AS item,
       CASE WHEN %(with_exif)s AND e."assetId" IS NOT NULL THEN json_build_object(
         'make', e.make,
         'model', e.model,
         'exifImageWidth', e."exifImageWidth",
         'exifImageHeight', e."exifImageHeight",
         'fileSizeInByte', nullif(e."fileSizeInByte", 0),
         'orientation', e.orientation,
         'dateTimeOriginal', e."dateTimeOriginal",
         'modifyDate', e."modifyDate",
         'timeZone', e."timeZone",
         'lensModel', e."lensModel",
         'fNumber', e."fNumber",
         'focalLength', e."focalLength",
         'iso', e.iso,
         'exposureTime', e."exposureTime",
         'latitude', e.latitude,
         'longitude', e.longitude,
         'city', e.city,
         'state', e.state,
         'country', e.country,
         'description', e.description,
         'projectionType', e."projectionType",
         'rating', e.rating
       ) END AS exif
FROM ranked AS r
CROSS JOIN partners
JOIN public.asset AS a ON a.id = r.asset_id
LEFT JOIN public.asset_exif AS e ON e."assetId" = a.id
WHERE immich_search.can_see_v2(a."ownerId", a.visibility::text, a."deletedAt", %(user_id)s::uuid,
                               coalesce(partners.ids, '{}'), false)
  AND (NOT %(with_exif)s OR e."assetId" IS NOT NULL)  -- withExif joins asset_exif (withExifInner)
  AND (%(asset_id)s::uuid IS NULL OR a.id = %(asset_id)s::uuid)
  AND (%(visibility)s::text IS NULL OR a.visibility::text = %(visibility)s::text)
  AND (%(type)s::text IS NULL OR a.type::text = %(type)s::text)
  AND (%(library_id)s::uuid IS NULL OR a."libraryId" = %(library_id)s::uuid)
  AND (%(is_favorite)s::boolean IS NULL OR a."isFavorite" = %(is_favorite)s::boolean)
  AND (%(is_offline)s::boolean IS NULL OR a."isOffline" = %(is_offline)s::boolean)
  AND (%(is_motion)s::boolean IS NULL OR (a."livePhotoVideoId" IS NOT NULL) = %(is_motion)s::boolean)
  AND (NOT %(without_stacked)s OR a."stackId" IS NULL)
  AND (%(created_after)s::timestamptz IS NULL OR a."createdAt" >= %(created_after)s::timestamptz)
  AND (%(created_before)s::timestamptz IS NULL OR a."createdAt" <= %(created_before)s::timestamptz)
  AND (%(updated_after)s::timestamptz IS NULL OR a."updatedAt" >= %(updated_after)s::timestamptz)
  AND (%(updated_before)s::timestamptz IS NULL OR a."updatedAt" <= %(updated_before)s::timestamptz)
  AND (%(taken_after)s::timestamptz IS NULL OR a."fileCreatedAt" >= %(taken_after)s::timestamptz)
  AND (%(taken_before)s::timestamptz IS NULL OR a."fileCreatedAt" <= %(taken_before)s::timestamptz)
  AND (NOT %(city_set)s OR (e."assetId" IS NOT NULL AND e.city IS NOT DISTINCT FROM %(city)s::text))
  AND (NOT %(state_set)s OR (e."assetId" IS NOT NULL AND e.state IS NOT DISTINCT FROM %(state)s::text))
  AND (NOT %(country_set)s OR (e."assetId" IS NOT NULL AND e.country IS NOT DISTINCT FROM %(country)s::text))
  AND (NOT %(make_set)s OR (e."assetId" IS NOT NULL AND e.make IS NOT DISTINCT FROM %(make)s::text))
  AND (NOT %(model_set)s OR (e."assetId" IS NOT NULL AND e.model IS NOT DISTINCT FROM %(model)s::text))
  AND (NOT %(lens_model_set)s
       OR (e."assetId" IS NOT NULL AND e."lensModel" IS NOT DISTINCT FROM %(lens_model)s::text))
  AND (NOT %(rating_set)s OR (e."assetId" IS NOT NULL AND e.rating IS NOT DISTINCT FROM %(rating)s::integer))
  AND (NOT %(not_in_album)s OR NOT EXISTS (SELECT 1 FROM public.album_asset AS aa WHERE aa."assetId" = a.id))
  AND (NOT %(without_tags)s OR NOT EXISTS (SELECT 1 FROM public.tag_asset AS ta WHERE ta."assetId" = a.id))
  AND (%(is_encoded)s::boolean IS NULL
       OR EXISTS (SELECT 1 FROM public.asset_file AS f
                  WHERE f."assetId" = a.id AND f.type::text = 'encoded_video') = %(is_encoded)s::boolean)
  -- hasPeople: every person given has a visible, undeleted face on the asset (Immich compares the count
  -- of distinct matches with the length of the list as sent, duplicates included)
  AND (%(person_ids)s::uuid[] IS NULL OR (
       SELECT count(DISTINCT af."personId") FROM public.asset_face AS af
       WHERE af."assetId" = a.id AND af."personId" = ANY(%(person_ids)s::uuid[])
         AND af."deletedAt" IS NULL AND af."isVisible") = cardinality(%(person_ids)s::uuid[]))
  -- hasTags: the asset carries each tag given, or one of its descendants
  AND (%(tag_ids)s::uuid[] IS NULL OR (
       SELECT count(DISTINCT tc.id_ancestor) FROM public.tag_asset AS ta
       JOIN public.tag_closure AS tc ON tc.id_descendant = ta."tagId"
       WHERE ta."assetId" = a.id AND tc.id_ancestor = ANY(%(tag_ids)s::uuid[])) >= cardinality(%(tag_ids)s::uuid[]))
ORDER BY r.ord
LIMIT %(limit)s OFFSET %(offset)s

-- name: serve_session_credential
-- Immich's validateSession: the session of a token (sha256) that has not expired, of a user not deleted.
SELECT s."userId"
FROM public.session AS s JOIN public."user" AS u ON u.id = s."userId" AND u."deletedAt" IS NULL
WHERE s.token = %(hashed)s AND (s."expiresAt" IS NULL OR s."expiresAt" > now())

-- name: serve_api_key_credential
-- Immich's validateApiKey: the key (sha256) of a user not deleted, and whether it grants asset.read
-- (Permission.AssetRead, which Immich's search endpoints require; "all" grants everything).
SELECT k."userId", ('all' = ANY(k.permissions::text[]) OR 'asset.read' = ANY(k.permissions::text[]))
FROM public.api_key AS k JOIN public."user" AS u ON u.id = k."userId" AND u."deletedAt" IS NULL
WHERE k.key = %(hashed)s
