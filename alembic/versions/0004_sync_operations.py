"""Sync operations: requeue from psql, wake-up notifications, worker heartbeats (issue 5).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-20
"""

from immich_search.migrate import apply_sql_files

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files(["schema/0004_sync_operations.sql"])


def downgrade() -> None:
    apply_sql_files(["schema/0004_down.sql"])
