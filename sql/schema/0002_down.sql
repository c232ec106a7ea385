-- Revision 0002 down.
DROP FUNCTION IF EXISTS immich_search.search_ocr_tsquery(tsquery, tsquery, uuid, integer, integer, boolean);
