-- Revision 0009 down: the people functions, stable names first.
DROP FUNCTION IF EXISTS immich_search.nearest_person(vector, uuid, real);
DROP FUNCTION IF EXISTS immich_search.photos_of(uuid, uuid, integer);
DROP FUNCTION IF EXISTS immich_search.people_in(uuid, uuid, boolean);
DROP FUNCTION IF EXISTS immich_search.nearest_person_v1(vector, uuid, real);
DROP FUNCTION IF EXISTS immich_search.photos_of_v1(uuid, uuid, integer);
DROP FUNCTION IF EXISTS immich_search.people_in_v1(uuid, uuid, boolean);
