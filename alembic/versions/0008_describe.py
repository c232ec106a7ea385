"""Photo descriptions from a vision LLM: the describe task and immich_search.description (issue 18).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from immich_search.migrate import apply_sql_files

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files(["schema/0008_describe.sql"])


def downgrade() -> None:
    apply_sql_files(["schema/0008_down.sql"])
