"""The writer: discovery, the queue, the pipeline, the workers, the image sources (immich_search.sync)."""
