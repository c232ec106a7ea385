"""immich-search: Chinese full-text, OCR and Chinese-CLIP search for Immich, inside PostgreSQL."""

__version__ = "0.1.0"
