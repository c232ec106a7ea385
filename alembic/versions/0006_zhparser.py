"""zhparser for real: immich_search.zh follows the installed zhparser at every migrate (issue 19).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from immich_search.migrate import apply_sql_files

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files(["schema/0006_zhparser.sql"])


def downgrade() -> None:
    apply_sql_files(["schema/0006_down.sql"])
