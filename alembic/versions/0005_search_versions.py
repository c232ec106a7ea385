"""Honest SQL versions: v2 search functions on versioned names only, one visibility rule, capped queries,
superseded versions dropped (issue 13). Data and the psql API are unchanged.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from immich_search.migrate import apply_sql_files

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files(["schema/0005_search_versions.sql"])


def downgrade() -> None:
    # The v1 tokenizer and OCR ranking come back from their own 0001 files, then the rest.
    apply_sql_files(
        [
            "schema/0005_down_first.sql",
            "schema/0001_fold_v1.sql",
            "schema/0001_ocr_functions.sql",
            "schema/0005_down.sql",
        ]
    )
