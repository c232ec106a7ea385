"""``immich-search ml``: cn-clip and our OCR behind Immich's machine-learning protocol and MT-Photos' API."""
