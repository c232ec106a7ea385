"""The reader: the query language, query building, fusion and results (installed as immich_search.ranking)."""
