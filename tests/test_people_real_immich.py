"""`immich-search people` against Immich v3.1's own server: the database path and `--source api` give the same
answers on the same library (issue 17).

The library is made through Immich's API where Immich's API can make it: people created and named
(`POST /api/people`, `PUT /api/people/{id}`: a name, a birth date, a hidden person), faces drawn on photos
(`POST /api/faces`, as a user tags a face by hand), a person deleted so that their face is left unknown
(`DELETE /api/people/{id}`), one photo archived and one trashed (`PUT /api/assets`, `DELETE /api/assets`).
For a photo file not in the library, face vectors are needed, which only Immich's face job writes: those
rows are inserted the way it writes them (`asset_face` source machine-learning + `face_search`, 512-d).

It changes the library, so it runs only against an instance of its own, named by
``IMMICH_SEARCH_TEST_REAL_IMMICH_PEOPLE_DIR`` (that instance's ``REAL_IMMICH_DIR``, seeded by
``../shared/real-immich/start.sh --seed``), ``IMMICH_SEARCH_TEST_REAL_IMMICH_PEOPLE_PORT`` and
``..._PG_PORT``; it skips otherwise, and undoes its changes at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from immich_search import immich_rows, migrate
from immich_search.cli import cli
from tests.fake_immich import running
from tests.real_immich import own_instance
from tests.test_people import RED, ZHANG, jpeg, stand_in_ml, unit

pytestmark = pytest.mark.real_immich


def _instance() -> dict[str, str]:
    return own_instance(
        "PEOPLE", "a real Immich instance this test may change (not a shared one)", ("dir", "port", "pg_port")
    )


class Library:
    """The instance: admin's and bob's API clients and keys, the database URL, seeded assets by file stem."""

    def __init__(self, instance: dict[str, str]) -> None:
        root = Path(instance["dir"])
        self.url = f"http://127.0.0.1:{instance['port']}"
        self.db_url = f"postgresql://postgres:postgres@127.0.0.1:{instance['pg_port']}/immich"
        self.keys = {who: (root / "secrets" / f"{who}.apikey").read_text().strip() for who in ("admin", "bob")}
        self.api = {
            who: httpx.Client(base_url=self.url + "/api", headers={"x-api-key": key}, timeout=60)
            for who, key in self.keys.items()
        }
        with psycopg.connect(self.db_url) as conn:
            rows = conn.execute('SELECT id, "originalFileName" FROM asset WHERE "deletedAt" IS NULL').fetchall()
        self.assets = {Path(name).stem: str(asset_id) for asset_id, name in rows}

    def call(self, who: str, method: str, path: str, **kwargs):
        response = self.api[who].request(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None


@pytest.fixture(scope="module")
def lib():
    library = Library(_instance())
    migrate.upgrade(library.db_url)
    a = library.assets
    made = {"people": [], "faces": [], "ml_faces": []}

    def person(**body) -> str:
        person_id = library.call("admin", "POST", "/people", json=body)["id"]
        made["people"].append(person_id)
        return person_id

    def face(asset: str, person_id: str, x: int) -> None:
        body = {"assetId": a[asset], "personId": person_id, "imageWidth": 1000, "imageHeight": 800}
        library.call("admin", "POST", "/faces", json={**body, "x": x, "y": 50, "width": 80, "height": 90})

    zhang = person()
    library.call("admin", "PUT", f"/people/{zhang}", json={"name": "张三", "birthDate": "1990-05-01"})
    unnamed = person()
    hidden = person(name="Hidden Harry")
    library.call("admin", "PUT", f"/people/{hidden}", json={"isHidden": True})
    gone = person(name="Temp")
    face("zh_ad_01", zhang, 300)
    face("zh_ad_01", unnamed, 100)
    face("zh_ad_01", hidden, 500)
    face("zh_ad_01", gone, 700)
    for stem in ("zh_ecom_01", "zh_exam_01", "zh_menu_01", "zh_notice_01"):
        face(stem, zhang, 200)
    face("zh_sign_02", hidden, 200)
    library.call("admin", "DELETE", f"/people/{gone}")  # its face stays, assigned to nobody
    made["people"].remove(gone)
    library.call("admin", "PUT", "/assets", json={"ids": [a["zh_menu_01"]], "visibility": "archive"})
    library.call("admin", "DELETE", "/assets", json={"ids": [a["zh_notice_01"]]})
    # What Immich's face job writes for a detected face, for matching a new photo by its face vector.
    with psycopg.connect(library.db_url, autocommit=True) as conn:
        made["ml_faces"].append(immich_rows.insert_face(conn, a["zh_exam_01"], unit(ZHANG), person_id=zhang))
    library.people = {"zhang": zhang, "unnamed": unnamed, "hidden": hidden}
    try:
        yield library
    finally:
        library.call("admin", "POST", "/trash/restore/assets", json={"ids": [a["zh_notice_01"]]})
        library.call("admin", "PUT", "/assets", json={"ids": [a["zh_menu_01"]], "visibility": "timeline"})
        with psycopg.connect(library.db_url, autocommit=True) as conn:
            ids = list(library.people.values())
            conn.execute('DELETE FROM asset_face WHERE "personId" = ANY(%s) OR id = ANY(%s)', (ids, made["ml_faces"]))
            conn.execute(
                'DELETE FROM asset_face WHERE "personId" IS NULL AND "sourceType" = %s AND "assetId" = %s',
                ("manual", a["zh_ad_01"]),
            )
        for person_id in made["people"]:
            library.api["admin"].delete(f"/people/{person_id}")


def people(lib, who: str, *args, source: str = "db"):
    options = ["--source", "api", "--immich-url", lib.url, "--api-key", lib.keys[who]] if source == "api" else []
    email = {"admin": "admin@example.com", "bob": "bob@example.com"}[who]
    result = CliRunner().invoke(
        cli, ["--database-url", lib.db_url, "people", *args, "--user", email, "--json", *options]
    )
    assert "Traceback" not in result.output
    return result


def both(lib, who: str, *args) -> dict:
    db, api = people(lib, who, *args), people(lib, who, *args, source="api")
    assert db.exit_code == 0, db.output
    assert api.exit_code == 0, api.output
    assert json.loads(db.output) == json.loads(api.output)
    return json.loads(db.output)


def stems(lib, photos) -> list[str]:
    by_id = {asset_id: stem for stem, asset_id in lib.assets.items()}
    return [by_id[photo["asset_id"]] for photo in photos]


def test_the_database_and_the_api_agree(lib):
    a = lib.assets
    report = both(lib, "admin", a["zh_ad_01"])
    assert [p["name"] for p in report["people"]] == ["", "张三"]
    assert report["people"][1]["birth_date"] == "1990-05-01"
    assert report["unknown_faces"] == 1
    zhang_photos = stems(lib, report["people"][1]["photos"])
    assert sorted(zhang_photos) == ["zh_ecom_01", "zh_exam_01", "zh_menu_01"]  # archived yes, trashed no
    hidden = both(lib, "admin", a["zh_ad_01"], "--include-hidden")
    assert "Hidden Harry" in [p["name"] for p in hidden["people"]]
    assert both(lib, "admin", a["zh_ad_01"], "--limit", "1")["people"][1]["photos"] == report["people"][1]["photos"][:1]
    assert both(lib, "admin", a["neg_cat_01"])["faces"] == []  # a photo with no face
    # bob sees admin's photos as a partner, but admin's people are admin's (Immich's GET /api/faces gives him
    # the faces without their person): four faces, none of them his people, the hidden person's included.
    partner = both(lib, "bob", a["zh_ad_01"])
    assert partner["people"] == [] and partner["unknown_faces"] == 4


def test_trashed_and_other_users_photos_are_errors_both_ways(lib):
    a = lib.assets
    for who, asset in (("admin", "zh_notice_01"), ("admin", "zh_ticket_01")):
        for source in ("db", "api"):
            result = people(lib, who, a[asset], source=source)
            assert result.exit_code == 1 and "that this user may see" in result.output, (asset, source, result.output)


def test_a_new_photo_through_the_ml_protocol(lib, tmp_path):
    photo = tmp_path / "red.jpg"
    photo.write_bytes(jpeg(RED))
    with running(stand_in_ml([])) as ml:
        report = json.loads(people(lib, "admin", str(photo), "--ml-url", ml).output)
        # 张三's face is 0.3 from the one Immich's face job stored; the other two match none of admin's faces.
        assert [p["name"] for p in report["people"]] == ["张三"] and report["unknown_faces"] == 2
        assert stems(lib, report["people"][0]["photos"])[0] in ("zh_menu_01", "zh_exam_01", "zh_ecom_01")
        corrupt = tmp_path / "corrupt.jpg"
        corrupt.write_bytes(jpeg(RED)[:300])
        result = people(lib, "admin", str(corrupt), "--ml-url", ml)
        assert result.exit_code == 1 and "is not a photo that can be read" in result.output
    api = people(lib, "admin", str(photo), source="api")
    assert api.exit_code == 1 and "not in your library" in api.output
