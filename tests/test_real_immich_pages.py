"""serve's pages built in the database, against Immich v3.1's own answers (issue 14).

Every item serve builds (``serve_ocr_page``, :mod:`immich_search.serve.pages`) is compared field by field
with what Immich's own ``POST /api/search/metadata`` answers for the same asset and the same user, for
every asset of the server, both seeded users, with and without ``withExif``. The few fields where the two
cannot agree are listed in :data:`KNOWN_DIFFERENCES` (and in docs/serve.md, with the reason).
"""

from __future__ import annotations

import psycopg
import pytest

from immich_search.db import open_pool
from immich_search.serve.pages import PARITY_VERSIONS, PageRequest, items_by_id, mime_type
from tests.real_immich import ensure_indexed

pytestmark = pytest.mark.real_immich

KNOWN_DIFFERENCES: dict[str, str] = {}
"""Field -> why serve's item differs from Immich's own (none at present; docs/serve.md lists the rest)."""


@pytest.fixture(scope="module")
def pool(real_immich):
    ensure_indexed(real_immich)
    with open_pool(real_immich.db_url) as pool:
        yield pool


def immich_items(server, key: str, body: dict) -> list[dict]:
    with server.api(key) as client:
        response = client.post("/search/metadata", json={"size": 1000, **body})
        assert response.status_code == 200, response.text
        return response.json()["assets"]["items"]


def test_the_server_is_a_version_the_parity_test_covers(real_immich):
    with real_immich.api() as client:
        version = client.get("/server/version").json()
    assert (version["major"], version["minor"]) in PARITY_VERSIONS


@pytest.mark.parametrize("with_exif", [False, True], ids=["plain", "withExif"])
def test_every_item_equals_immichs_own_for_both_users(real_immich, pool, with_exif):
    with psycopg.connect(real_immich.db_url) as conn:
        ids = [str(row[0]) for row in conn.execute('SELECT id FROM asset WHERE "deletedAt" IS NULL ORDER BY id')]
    assert len(ids) >= 18
    users = {"admin": (real_immich.admin_key, real_immich.admin_id), "bob": (real_immich.bob_key, real_immich.bob_id)}
    compared = 0
    for user, (key, user_id) in users.items():
        ours = {item["id"]: item for item in items_by_id(pool, ids, PageRequest(user_id, 1, 1000, with_exif, {}))}
        theirs = {item["id"]: item for item in immich_items(real_immich, key, {"withExif": with_exif})}
        # The same assets: what Immich's search shows this user (own, partner's timeline), nothing else.
        assert set(ours) == set(theirs), user
        for asset_id, expected in theirs.items():
            got = ours[asset_id]
            for field in sorted(set(expected) | set(got)):
                if field in KNOWN_DIFFERENCES:
                    continue
                assert got.get(field, "<absent>") == expected.get(field, "<absent>"), (user, asset_id, field)
                compared += 1
    assert compared >= 25 * (14 + 18)  # admin sees 14 seeded photos, bob his 4 and admin's 14


def test_mime_types_follow_immichs_table():
    assert mime_type("IMG_0001.JPG") == "image/jpeg"
    assert mime_type("scan.tiff") == "image/tiff"
    assert mime_type("clip.MOV") == "video/quicktime"
    assert mime_type("raw.cr3") == "image/cr3"
    assert mime_type(".jpg") == "application/octet-stream"  # path.extname: a leading dot is no extension
    assert mime_type("notes.txt") == "application/octet-stream"
