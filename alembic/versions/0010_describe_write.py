"""Descriptions written into Immich (issue 18 point 5): the record of what sync wrote, immich_search.immich_description.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from immich_search.migrate import apply_sql_files

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files(["schema/0010_describe_write.sql"])


def downgrade() -> None:
    apply_sql_files(["schema/0010_down.sql"])
