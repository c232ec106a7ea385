"""`person:NAME` in search and a people filter on every search branch: person_terms_v1, people_named_v1,
people_assets_v1, photos_with_people_v1 and new versions of the candidate and search functions taking the
filter; search, search_ocr, search_ocr_tsquery, ocr_candidates, search_clip and ocr_tsquery repointed
(issue 17, point 4).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from immich_search.migrate import apply_sql_files

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    apply_sql_files(["schema/0011_person_search.sql"])


def downgrade() -> None:
    apply_sql_files(["schema/0011_down.sql"])
