-- Revision 0006 down: the function only. immich_search.zh, the zhparser extension in our schema and the
-- text_search_parser setting are 0001's, whose down removes them.
DROP FUNCTION IF EXISTS immich_search.zh_configure_v1();
