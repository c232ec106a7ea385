-- Undo revision 0010: the record of descriptions written into Immich goes (Immich keeps the texts).
DROP TABLE immich_search.immich_description;
