-- The subset of Immich v3.1's schema (server/src/schema/tables/*.table.ts) that immich-search reads.
-- Used by the tests and by `immich-search demo` to build an Immich-shaped database; never applied to a
-- real Immich database. Table, column, type and enum names are Immich's own.
-- pg_trgm and unaccent are contrib modules: created where available (Debian's PostgreSQL, Immich's image),
-- skipped on the embedded server (pgserver ships none); f_unaccent falls back to the identity there.

CREATE EXTENSION IF NOT EXISTS vector;

DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
    CREATE EXTENSION IF NOT EXISTS pg_trgm;
  END IF;
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'unaccent') THEN
    CREATE EXTENSION IF NOT EXISTS unaccent;
    EXECUTE $f$
      CREATE OR REPLACE FUNCTION public.f_unaccent(text) RETURNS text
      LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
      RETURN public.unaccent('public.unaccent', $1)
    $f$;
  ELSE
    EXECUTE $f$
      CREATE OR REPLACE FUNCTION public.f_unaccent(text) RETURNS text
      LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
      RETURN $1
    $f$;
  END IF;
END
$$;

-- Immich's uuid v7 generator (server/src/schema/functions.ts, immich_uuid_v7): time-ordered, so
-- "updateId" grows with every update and works as a sync cursor.
CREATE OR REPLACE FUNCTION public.immich_uuid_v7(p_timestamp timestamp with time zone DEFAULT clock_timestamp())
RETURNS uuid LANGUAGE sql VOLATILE AS $$
  SELECT encode(
    set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
      PLACING substring(int8send(floor(extract(epoch FROM p_timestamp) * 1000)::bigint) FROM 3)
      FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;

-- Immich's trigger function: every update stamps "updatedAt" and a fresh "updateId".
CREATE OR REPLACE FUNCTION public.updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW."updatedAt" = now();
  NEW."updateId" = public.immich_uuid_v7();
  RETURN NEW;
END
$$;

CREATE TYPE public.asset_visibility_enum AS ENUM ('archive', 'timeline', 'hidden', 'locked');

CREATE TABLE public."user" (
  "id" uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  "email" character varying NOT NULL UNIQUE,
  "name" character varying NOT NULL DEFAULT '',
  "isAdmin" boolean NOT NULL DEFAULT false,
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "deletedAt" timestamp with time zone,
  "updateId" uuid NOT NULL DEFAULT public.immich_uuid_v7()
);

CREATE TABLE public.partner (
  "sharedById" uuid NOT NULL REFERENCES public."user" ("id") ON DELETE CASCADE,
  "sharedWithId" uuid NOT NULL REFERENCES public."user" ("id") ON DELETE CASCADE,
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "inTimeline" boolean NOT NULL DEFAULT false,
  PRIMARY KEY ("sharedById", "sharedWithId")
);

CREATE TABLE public.asset (
  "id" uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  "deviceAssetId" character varying NOT NULL DEFAULT '',
  "ownerId" uuid NOT NULL REFERENCES public."user" ("id") ON DELETE CASCADE,
  "deviceId" character varying NOT NULL DEFAULT '',
  "type" character varying NOT NULL,
  "originalPath" character varying NOT NULL,
  "fileCreatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "fileModifiedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "isFavorite" boolean NOT NULL DEFAULT false,
  "duration" character varying,
  "encodedVideoPath" character varying DEFAULT '',
  "checksum" bytea NOT NULL,
  "livePhotoVideoId" uuid REFERENCES public.asset ("id") ON DELETE SET NULL,
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "originalFileName" character varying NOT NULL,
  "thumbhash" bytea,
  "isOffline" boolean NOT NULL DEFAULT false,
  "libraryId" uuid,
  "isExternal" boolean NOT NULL DEFAULT false,
  "deletedAt" timestamp with time zone,
  "localDateTime" timestamp with time zone NOT NULL DEFAULT now(),
  "stackId" uuid,
  "duplicateId" uuid,
  "status" character varying NOT NULL DEFAULT 'active',
  "updateId" uuid NOT NULL DEFAULT public.immich_uuid_v7(),
  "visibility" public.asset_visibility_enum NOT NULL DEFAULT 'timeline',
  "width" integer,
  "height" integer,
  "isEdited" boolean NOT NULL DEFAULT false
);
CREATE INDEX "asset_ownerId_idx" ON public.asset ("ownerId");
CREATE INDEX "asset_updateId_idx" ON public.asset ("updateId");
CREATE UNIQUE INDEX "UQ_assets_owner_checksum" ON public.asset ("ownerId", "checksum") WHERE ("libraryId" IS NULL);
CREATE TRIGGER asset_updated_at BEFORE UPDATE ON public.asset
  FOR EACH ROW WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION public.updated_at();

CREATE TABLE public.asset_file (
  "id" uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  "assetId" uuid NOT NULL REFERENCES public.asset ("id") ON UPDATE CASCADE ON DELETE CASCADE,
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "type" character varying NOT NULL,
  "path" character varying NOT NULL,
  "updateId" uuid NOT NULL DEFAULT public.immich_uuid_v7(),
  "isEdited" boolean NOT NULL DEFAULT false,
  "isProgressive" boolean NOT NULL DEFAULT false,
  CONSTRAINT "asset_file_assetId_type_isEdited_uq" UNIQUE ("assetId", "type", "isEdited")
);
CREATE INDEX "asset_file_assetId_idx" ON public.asset_file ("assetId");
CREATE INDEX "asset_file_updateId_idx" ON public.asset_file ("updateId");
CREATE TRIGGER asset_file_updated_at BEFORE UPDATE ON public.asset_file
  FOR EACH ROW WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION public.updated_at();

CREATE TABLE public.asset_exif (
  "assetId" uuid NOT NULL PRIMARY KEY REFERENCES public.asset ("id") ON DELETE CASCADE,
  "make" character varying,
  "model" character varying,
  "exifImageWidth" integer,
  "exifImageHeight" integer,
  "fileSizeInByte" bigint,
  "orientation" character varying,
  "dateTimeOriginal" timestamp with time zone,
  "city" character varying,
  "state" character varying,
  "country" character varying,
  "description" text NOT NULL DEFAULT '',
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updateId" uuid NOT NULL DEFAULT public.immich_uuid_v7()
);

CREATE TABLE public.album (
  "id" uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  "ownerId" uuid NOT NULL REFERENCES public."user" ("id") ON DELETE CASCADE,
  "albumName" character varying NOT NULL DEFAULT 'Untitled Album',
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  "updatedAt" timestamp with time zone NOT NULL DEFAULT now(),
  "deletedAt" timestamp with time zone,
  "description" text NOT NULL DEFAULT '',
  "updateId" uuid NOT NULL DEFAULT public.immich_uuid_v7()
);

CREATE TABLE public.album_asset (
  "albumId" uuid NOT NULL REFERENCES public.album ("id") ON DELETE CASCADE,
  "assetId" uuid NOT NULL REFERENCES public.asset ("id") ON DELETE CASCADE,
  "createdAt" timestamp with time zone NOT NULL DEFAULT now(),
  PRIMARY KEY ("albumId", "assetId")
);

CREATE TABLE public.album_user (
  "albumId" uuid NOT NULL REFERENCES public.album ("id") ON DELETE CASCADE,
  "userId" uuid NOT NULL REFERENCES public."user" ("id") ON DELETE CASCADE,
  "role" character varying NOT NULL DEFAULT 'editor',
  PRIMARY KEY ("albumId", "userId")
);

CREATE TABLE public.asset_ocr (
  "id" uuid NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY,
  "assetId" uuid NOT NULL REFERENCES public.asset ("id") ON DELETE CASCADE,
  "x1" real NOT NULL, "y1" real NOT NULL, "x2" real NOT NULL, "y2" real NOT NULL,
  "x3" real NOT NULL, "y3" real NOT NULL, "x4" real NOT NULL, "y4" real NOT NULL,
  "boxScore" real NOT NULL,
  "textScore" real NOT NULL,
  "text" text NOT NULL,
  "isVisible" boolean NOT NULL DEFAULT true
);
CREATE INDEX "asset_ocr_assetId_idx" ON public.asset_ocr ("assetId");

CREATE TABLE public.ocr_search (
  "assetId" uuid NOT NULL PRIMARY KEY REFERENCES public.asset ("id") ON DELETE CASCADE,
  "text" text NOT NULL
);
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
    CREATE INDEX idx_ocr_search_text ON public.ocr_search USING gin (public.f_unaccent("text") gin_trgm_ops);
  END IF;
END
$$;

CREATE TABLE public.asset_job_status (
  "assetId" uuid NOT NULL PRIMARY KEY REFERENCES public.asset ("id") ON DELETE CASCADE,
  "facesRecognizedAt" timestamp with time zone,
  "metadataExtractedAt" timestamp with time zone,
  "duplicatesDetectedAt" timestamp with time zone,
  "ocrAt" timestamp with time zone
);

CREATE TABLE public.smart_search (
  "assetId" uuid NOT NULL PRIMARY KEY REFERENCES public.asset ("id") ON DELETE CASCADE,
  "embedding" vector(512) NOT NULL
);
CREATE INDEX clip_index ON public.smart_search USING hnsw ("embedding" vector_cosine_ops) WITH (m = 16, ef_construction = 300);
