"""OCR engines: the engine of every OCR row, and CJK query runs matched as runs (issue 16).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from immich_search.migrate import apply_sql_files

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files(["schema/0007_ocr_engines.sql"])


def downgrade() -> None:
    apply_sql_files(["schema/0007_down.sql"])
