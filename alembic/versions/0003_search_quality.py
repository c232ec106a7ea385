"""Search quality: fuzzy fallback, SQL-path segmentation, v2 query functions (issue 6).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-20
"""

from immich_search.migrate import apply_sql_files

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files(["schema/0003_search_quality.sql", "schema/0003_fold_char.sql", "schema/0003_cjk_dictionary.sql"])


def downgrade() -> None:
    apply_sql_files(["schema/0003_down.sql"])
