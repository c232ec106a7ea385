-- Rows in Immich's own tables as Immich v3.1 writes them (its schema: sql/immich/schema-v3.1.0.sql),
-- for the demo's library and the tests' (immich_search/immich_rows.py). Never run against a real Immich.

-- name: immich_upsert_user
INSERT INTO public."user" (email, name) VALUES (%(email)s, %(name)s)
ON CONFLICT (email) DO UPDATE SET name = excluded.name
RETURNING id

-- name: immich_asset_by_checksum
-- Immich's own unique key for uploads (UQ_assets_owner_checksum: owner and checksum, no library).
SELECT id FROM public.asset WHERE "ownerId" = %(owner_id)s AND checksum = %(checksum)s AND "libraryId" IS NULL

-- name: immich_insert_asset
-- Required in v3.1 without a default: "checksumAlgorithm", "fileCreatedAt", "fileModifiedAt", "localDateTime".
-- Trashing sets "deletedAt" and status 'trashed' together (Immich's trash).
INSERT INTO public.asset (id, "ownerId", type, "originalPath", "originalFileName", checksum, "checksumAlgorithm",
                          "fileCreatedAt", "fileModifiedAt", "localDateTime", visibility, status, "deletedAt",
                          "isFavorite")
VALUES (%(id)s, %(owner_id)s, %(type)s, %(original_path)s, %(original_file_name)s, %(checksum)s,
        'sha1'::public.asset_checksum_algorithm_enum, %(created_at)s, %(modified_at)s, %(local_date_time)s,
        %(visibility)s::public.asset_visibility_enum,
        (CASE WHEN %(trashed)s THEN 'trashed' ELSE 'active' END)::public.assets_status_enum,
        CASE WHEN %(trashed)s THEN now() END, %(favourite)s)

-- name: immich_insert_preview
-- The preview (JPEG) Immich writes for an image: asset_file type 'preview', not edited.
INSERT INTO public.asset_file ("assetId", type, path) VALUES (%(asset_id)s, 'preview', %(path)s)

-- name: immich_insert_exif
INSERT INTO public.asset_exif ("assetId", city, "fileSizeInByte", "exifImageWidth", "exifImageHeight")
VALUES (%(asset_id)s, %(city)s, %(file_size)s, %(width)s, %(height)s)

-- name: immich_insert_partner
INSERT INTO public.partner ("sharedById", "sharedWithId", "inTimeline")
VALUES (%(shared_by)s, %(shared_with)s, %(in_timeline)s)

-- name: immich_insert_album
-- v3 has no album."ownerId": the owner is the album_user row with role 'owner' (immich_insert_album_user).
INSERT INTO public.album ("albumName") VALUES (%(name)s) RETURNING id

-- name: immich_insert_album_user
INSERT INTO public.album_user ("albumId", "userId", role)
VALUES (%(album_id)s, %(user_id)s, %(role)s::public.album_user_role_enum)

-- name: immich_insert_album_assets
INSERT INTO public.album_asset ("albumId", "assetId") SELECT %(album_id)s, unnest(%(asset_ids)s::uuid[])

-- name: immich_insert_person
-- A person as Immich's facial recognition creates one (ownerId, faceAssetId) and its API edits (name,
-- isHidden, birthDate).
INSERT INTO public.person ("ownerId", name, "isHidden", "birthDate")
VALUES (%(owner_id)s, %(name)s, %(hidden)s, %(birth_date)s) RETURNING id

-- name: immich_insert_face
-- A face as Immich's face detection writes it (person.repository.ts createAssetFaces: asset_face with the
-- box in pixels of the preview, source machine-learning; face_search with its 512-d embedding), then the
-- person its facial recognition assigns (reassignFaces).
WITH face AS (
  INSERT INTO public.asset_face ("assetId", "personId", "imageWidth", "imageHeight", "boundingBoxX1",
                                 "boundingBoxY1", "boundingBoxX2", "boundingBoxY2", "isVisible", "deletedAt")
  VALUES (%(asset_id)s, %(person_id)s, %(width)s, %(height)s, %(x1)s, %(y1)s, %(x2)s, %(y2)s, %(visible)s,
          CASE WHEN %(deleted)s THEN now() END)
  RETURNING id)
INSERT INTO public.face_search ("faceId", embedding) SELECT id, %(embedding)s::vector FROM face RETURNING "faceId"

-- name: immich_set_face_asset
UPDATE public.person SET "faceAssetId" = %(face_id)s WHERE id = %(person_id)s AND "faceAssetId" IS NULL
