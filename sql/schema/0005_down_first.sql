-- Revision 0005 down, first part: the stable search_ocr goes (0001_ocr_functions.sql, applied next,
-- creates it again with the v1 functions 0005 dropped; 0005_down.sql then points it back at v2).
DROP FUNCTION immich_search.search_ocr(text, uuid, integer, integer, boolean);
