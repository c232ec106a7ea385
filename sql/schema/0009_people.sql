-- Schema immich_search, revision 0009: people in a photo, and photos of a person (issue 17).
--
-- Read-only views over Immich's own face tables (asset_face, person, face_search); nothing of Immich's
-- schema is changed. Visibility is can_see_v2, the one rule every search branch uses (sql/README.md).
-- The stable names people_in, photos_of and nearest_person are the psql API and point at the _v1 versions.

-- Bodies are strings (not BEGIN ATOMIC): a parsed body would record dependencies on Immich's tables and
-- could block Immich's own migrations of them.

-- The people in one photo, as Immich's GET /api/faces?id= lists them: the asset's faces that are visible
-- ("isVisible") and not deleted, with their person: NULL for a face Immich assigned to nobody, and, as
-- Immich's mapFaces does, for a person of someone else (a partner's photo shows its faces, not their
-- people: people belong to the user who owns the photos). Empty when
-- user_id may not see the asset (can_see_v2: owner's timeline/archive, a timeline partner's timeline;
-- never trashed, hidden or locked). Hidden people are left out unless include_hidden. One row per face,
-- left to right (then top to bottom); bounding boxes in pixels of the image Immich detected them on
-- (image_width x image_height).
CREATE FUNCTION immich_search.people_in_v1(asset_id uuid, user_id uuid, include_hidden boolean DEFAULT false)
RETURNS TABLE (face_id uuid, person_id uuid, name text, is_hidden boolean, birth_date date,
               x1 integer, y1 integer, x2 integer, y2 integer, image_width integer, image_height integer)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT f.id, p.id, p.name::text, p."isHidden", p."birthDate",
         f."boundingBoxX1", f."boundingBoxY1", f."boundingBoxX2", f."boundingBoxY2",
         f."imageWidth", f."imageHeight"
  FROM public.asset a
  JOIN public.asset_face f ON f."assetId" = a.id
  LEFT JOIN public.person p ON p.id = f."personId" AND p."ownerId" = people_in_v1.user_id
  WHERE a.id = people_in_v1.asset_id
    AND immich_search.can_see_v2(a."ownerId", a.visibility::text, a."deletedAt", people_in_v1.user_id,
          ARRAY(SELECT pa."sharedById" FROM public.partner pa
                WHERE pa."sharedWithId" = people_in_v1.user_id AND pa."inTimeline"), false)
    AND f."isVisible" AND f."deletedAt" IS NULL
    AND (people_in_v1.include_hidden OR p."isHidden" IS NOT TRUE)
  ORDER BY f."boundingBoxX1", f."boundingBoxY1", f.id
$$;

-- Up to k photos of a person that user_id may see (can_see_v2, never trashed or locked), newest first
-- ("fileCreatedAt", then id, both descending, as POST /api/search/metadata with personIds orders them;
-- Immich keeps no per-face quality score). A photo counts when it holds a visible, not deleted face of
-- the person.
CREATE FUNCTION immich_search.photos_of_v1(person_id uuid, user_id uuid, k integer DEFAULT 10)
RETURNS TABLE (asset_id uuid, original_file_name text, taken_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT a.id, a."originalFileName"::text, a."fileCreatedAt"
  FROM public.asset a
  WHERE EXISTS (SELECT 1 FROM public.asset_face f
                WHERE f."assetId" = a.id AND f."personId" = photos_of_v1.person_id
                  AND f."isVisible" AND f."deletedAt" IS NULL)
    AND immich_search.can_see_v2(a."ownerId", a.visibility::text, a."deletedAt", photos_of_v1.user_id,
          ARRAY(SELECT pa."sharedById" FROM public.partner pa
                WHERE pa."sharedWithId" = photos_of_v1.user_id AND pa."inTimeline"), false)
  ORDER BY a."fileCreatedAt" DESC, a.id DESC
  LIMIT greatest(photos_of_v1.k, 0)
$$;

-- The person a face embedding (512 floats, as Immich's face model gives) belongs to, by the nearest-face
-- search Immich's facial recognition runs (search.repository.ts searchFaces with hasPerson): the nearest
-- face with a person among user_id's own assets not deleted, by cosine distance (<=>), kept only when the
-- distance is at most max_distance (Immich's machineLearning.facialRecognition.maxDistance, 0.5 by
-- default in config.ts). No row: the face matches nobody.
CREATE FUNCTION immich_search.nearest_person_v1(embedding vector, user_id uuid, max_distance real DEFAULT 0.5)
RETURNS TABLE (person_id uuid, face_id uuid, distance real)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
  SELECT c.person_id, c.face_id, c.distance::real
  FROM (SELECT f."personId" AS person_id, f.id AS face_id, s.embedding <=> nearest_person_v1.embedding AS distance
        FROM public.asset_face f
        JOIN public.asset a ON a.id = f."assetId"
        JOIN public.face_search s ON s."faceId" = f.id
        WHERE a."ownerId" = nearest_person_v1.user_id AND a."deletedAt" IS NULL AND f."personId" IS NOT NULL
        ORDER BY distance
        LIMIT 1) AS c
  WHERE c.distance <= nearest_person_v1.max_distance
$$;

-- The psql API: stable names pointing at the newest versions.
CREATE FUNCTION immich_search.people_in(asset_id uuid, user_id uuid, include_hidden boolean DEFAULT false)
RETURNS TABLE (face_id uuid, person_id uuid, name text, is_hidden boolean, birth_date date,
               x1 integer, y1 integer, x2 integer, y2 integer, image_width integer, image_height integer)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.people_in_v1(asset_id, user_id, include_hidden)
$$;

CREATE FUNCTION immich_search.photos_of(person_id uuid, user_id uuid, k integer DEFAULT 10)
RETURNS TABLE (asset_id uuid, original_file_name text, taken_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.photos_of_v1(person_id, user_id, k)
$$;

CREATE FUNCTION immich_search.nearest_person(embedding vector, user_id uuid, max_distance real DEFAULT 0.5)
RETURNS TABLE (person_id uuid, face_id uuid, distance real)
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT * FROM immich_search.nearest_person_v1(embedding, user_id, max_distance)
$$;
