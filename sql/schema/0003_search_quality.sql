-- Schema immich_search, revision 0003: Search quality: fuzzy fallback, SQL-path segmentation, v2 query functions (issue 6).
SELECT 1;
