"""Chinese-CLIP vectors and hybrid ranking (issue 3).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-20
"""

from immich_search.migrate import apply_sql_files

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files(["schema/0002_clip_search.sql"])


def downgrade() -> None:
    apply_sql_files(["schema/0002_down.sql"])
