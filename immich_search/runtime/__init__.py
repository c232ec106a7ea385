"""The Chinese-CLIP model runtime: files (manifest), sessions (onnxruntime / RKNN), tokenizer, image
preprocessing, the model, and loading it from options (no click here: the CLI, the sync workers and serve
all load through :func:`immich_search.runtime.loading.load_clip_model`)."""
