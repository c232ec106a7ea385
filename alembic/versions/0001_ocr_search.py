"""OCR search: tables, queue, cursor, text search configuration, fold, query tokenizer, ranking.

Revision ID: 0001
Revises:
Create Date: 2026-11-20
"""

from immich_search.migrate import apply_sql_files

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files(["schema/0001_ocr_tables.sql", "schema/0001_fold_v1.sql", "schema/0001_ocr_functions.sql"])


def downgrade() -> None:
    apply_sql_files(["schema/0001_down.sql"])
