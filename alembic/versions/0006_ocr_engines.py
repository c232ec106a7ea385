"""OCR engines: the engine of every OCR row, and CJK query runs matched as runs (issue 16).

Revision ID: 0006
Revises: 0004
Create Date: 2026-11-29
"""

from immich_search.migrate import apply_sql_files

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files(["schema/0006_ocr_engines.sql"])


def downgrade() -> None:
    apply_sql_files(["schema/0006_down.sql"])
