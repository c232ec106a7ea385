"""People in a photo and photos of a person: people_in_v1, photos_of_v1, nearest_person_v1 and their
stable names, read-only over Immich's face tables (issue 17).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from immich_search.migrate import apply_sql_files

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files(["schema/0009_people.sql"])


def downgrade() -> None:
    apply_sql_files(["schema/0009_down.sql"])
