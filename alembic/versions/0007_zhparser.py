"""zhparser for real: immich_search.zh follows the installed zhparser at every migrate (issue 19).

Revision ID: 0007
Revises: 0004
Create Date: 2026-11-29
"""

from immich_search.migrate import apply_sql_files

revision = "0007"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files(["schema/0007_zhparser.sql"])


def downgrade() -> None:
    apply_sql_files(["schema/0007_down.sql"])
