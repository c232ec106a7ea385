"""`immich-search people` (issue 17) on a real PostgreSQL holding Immich's schema, faces inserted the way
Immich's face jobs write them: the database path, the psql functions, and a photo file through a stand-in of
Immich's machine-learning service (deterministic 512-d faces by the photo's colour)."""

from __future__ import annotations

import hashlib
import io
import json
import math
from datetime import date

import psycopg
import pytest
from click.testing import CliRunner
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from immich_search import immich_rows
from immich_search.cli import cli
from tests.conftest import scratch_database
from tests.fake_immich import add_asset, add_four_users, running

DIM = 512  # buffalo_l's embedding size, as face_search.embedding vector(512)


def unit(index: int) -> list[float]:
    """A one-hot embedding: person ``index``'s face."""
    vector = [0.0] * DIM
    vector[index] = 1.0
    return vector


def near(index: int, other: int, distance: float) -> list[float]:
    """A unit embedding at cosine distance ``distance`` from ``unit(index)`` (turned towards ``other``)."""
    cos = 1.0 - distance
    vector = [0.0] * DIM
    vector[index] = cos
    vector[other] = math.sqrt(1.0 - cos * cos)
    return vector


ZHANG, UNNAMED, HIDDEN, BOB, STRANGER = 1, 2, 3, 4, 5


@pytest.fixture(scope="module")
def library(server, migrated_template):
    """alice's library: 张三 in several photos (trashed, locked, hidden, archived among them), an unnamed person,
    a hidden person, an unknown face; bob shares his timeline with alice, carol shares outside it."""
    with scratch_database(server, migrated_template) as url, psycopg.connect(url, autocommit=True) as conn:
        users = add_four_users(conn)
        alice, bob, carol = users["alice"], users["bob"], users["carol"]
        zhang = immich_rows.insert_person(conn, alice, "张三", birth_date=date(1990, 5, 1))
        unnamed = immich_rows.insert_person(conn, alice)
        hidden = immich_rows.insert_person(conn, alice, "Hidden Harry", hidden=True)
        bob_li = immich_rows.insert_person(conn, bob, "Bob Li")
        ids: dict[str, str] = {}
        ids["party.jpg"] = add_asset(conn, alice, "party.jpg", [], age_days=1)
        immich_rows.insert_face(conn, ids["party.jpg"], unit(ZHANG), person_id=zhang, box=(300, 10, 360, 80))
        immich_rows.insert_face(conn, ids["party.jpg"], unit(UNNAMED), person_id=unnamed, box=(100, 10, 160, 80))
        immich_rows.insert_face(conn, ids["party.jpg"], unit(HIDDEN), person_id=hidden, box=(500, 10, 560, 80))
        immich_rows.insert_face(conn, ids["party.jpg"], unit(STRANGER), box=(700, 10, 760, 80))
        # Neither a deleted nor an invisible face counts.
        immich_rows.insert_face(conn, ids["party.jpg"], unit(ZHANG), person_id=zhang, box=(0, 0, 5, 5), deleted=True)
        immich_rows.insert_face(conn, ids["party.jpg"], unit(ZHANG), person_id=zhang, box=(0, 0, 6, 6), visible=False)
        for name, age, kwargs in [
            ("zs1.jpg", 2, {}),
            ("zs2.jpg", 3, {}),
            ("zs-trashed.jpg", 4, {"trashed": True}),
            ("zs-locked.jpg", 5, {"visibility": "locked"}),
            ("zs-archived.jpg", 6, {"visibility": "archive"}),
            ("zs-hidden.jpg", 7, {"visibility": "hidden"}),
        ]:
            ids[name] = add_asset(conn, alice, name, [], age_days=age, **kwargs)
            immich_rows.insert_face(conn, ids[name], unit(ZHANG), person_id=zhang)
        ids["harry.jpg"] = add_asset(conn, alice, "harry.jpg", [], age_days=8)
        immich_rows.insert_face(conn, ids["harry.jpg"], unit(HIDDEN), person_id=hidden)
        ids["empty.jpg"] = add_asset(conn, alice, "empty.jpg", [], age_days=9)
        ids["bob1.jpg"] = add_asset(conn, bob, "bob1.jpg", [], age_days=1)
        ids["bob2.jpg"] = add_asset(conn, bob, "bob2.jpg", [], age_days=2)
        ids["bob-archived.jpg"] = add_asset(conn, bob, "bob-archived.jpg", [], age_days=3, visibility="archive")
        for name in ("bob1.jpg", "bob2.jpg", "bob-archived.jpg"):
            immich_rows.insert_face(conn, ids[name], unit(BOB), person_id=bob_li)
        ids["carol.jpg"] = add_asset(conn, carol, "carol.jpg", [], age_days=1)
        people = {"zhang": zhang, "unnamed": unnamed, "hidden": hidden, "bob": bob_li}
        yield {"url": url, "users": users, "ids": ids, "people": people, "conn": conn}


def run(library, *args, user="alice@example.com"):
    result = CliRunner().invoke(cli, ["--database-url", library["url"], "people", *args, "--user", user])
    assert "Traceback" not in result.output
    return result


def as_json(library, *args, user="alice@example.com") -> dict:
    result = run(library, *args, "--json", user=user)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def names(library, photos) -> list[str]:
    by_id = {asset_id: name for name, asset_id in library["ids"].items()}
    return [by_id[photo["asset_id"]] for photo in photos]


def test_people_in_an_asset_with_their_other_photos(library):
    report = as_json(library, library["ids"]["party.jpg"])
    people = report["people"]
    # Left to right: the unnamed person (x1=100), then 张三 (x1=300); Hidden Harry is left out.
    assert [p["id"] for p in people] == [library["people"]["unnamed"], library["people"]["zhang"]]
    assert people[0]["name"] == "" and people[1]["name"] == "张三"
    assert people[1]["birth_date"] == "1990-05-01" and people[1]["faces"] == 1
    # Newest first; never trashed, locked or hidden-visibility photos; never the photo itself.
    assert names(library, people[1]["photos"]) == ["zs1.jpg", "zs2.jpg", "zs-archived.jpg"]
    assert people[0]["photos"] == []
    assert report["unknown_faces"] == 1
    assert len(report["faces"]) == 3  # neither the deleted nor the invisible face


def test_limit_and_table(library):
    report = as_json(library, library["ids"]["party.jpg"], "--limit", "1")
    assert names(library, report["people"][1]["photos"]) == ["zs1.jpg"]
    result = run(library, library["ids"]["party.jpg"])
    assert result.exit_code == 0, result.output
    assert "张三" in result.output and "(no name)" in result.output and "zs1.jpg" in result.output
    assert "1 unknown face" in result.output and "Hidden Harry" not in result.output


def test_include_hidden(library):
    report = as_json(library, library["ids"]["party.jpg"], "--include-hidden")
    hidden = [p for p in report["people"] if p["is_hidden"]]
    assert [p["name"] for p in hidden] == ["Hidden Harry"]
    assert names(library, hidden[0]["photos"]) == ["harry.jpg"]


def test_a_partners_photo_shows_faces_not_their_owners_people(library):
    # As Immich's GET /api/faces: people belong to the user who owns the photos.
    report = as_json(library, library["ids"]["bob1.jpg"])
    assert report["people"] == [] and report["unknown_faces"] == 1
    conn, bob = library["conn"], library["users"]["bob"]
    photos = conn.execute(
        "SELECT original_file_name FROM immich_search.photos_of(%s, %s, 10)", (library["people"]["bob"], bob)
    ).fetchall()
    assert [row[0] for row in photos] == ["bob1.jpg", "bob2.jpg", "bob-archived.jpg"]
    alice = library["users"]["alice"]
    photos = conn.execute(
        "SELECT original_file_name FROM immich_search.photos_of(%s, %s, 10)", (library["people"]["bob"], alice)
    ).fetchall()
    assert [row[0] for row in photos] == ["bob1.jpg", "bob2.jpg"]  # a partner's archive is not shared


@pytest.mark.parametrize("photo", ["carol.jpg", "zs-locked.jpg", "zs-trashed.jpg"])
def test_a_photo_the_caller_may_not_see_is_a_clear_error(library, photo):
    result = run(library, library["ids"][photo])
    assert result.exit_code == 1
    assert "that this user may see" in result.output


def test_a_photo_with_no_face(library):
    assert as_json(library, library["ids"]["empty.jpg"])["people"] == []
    result = run(library, library["ids"]["empty.jpg"])
    assert result.exit_code == 0 and "no faces" in result.output


def test_psql_functions(library):
    conn, ids, alice = library["conn"], library["ids"], library["users"]["alice"]
    rows = conn.execute("SELECT name FROM immich_search.people_in(%s, %s)", (ids["party.jpg"], alice)).fetchall()
    assert rows == [("",), ("张三",), (None,)]
    rows = conn.execute("SELECT name FROM immich_search.people_in(%s, %s, true)", (ids["party.jpg"], alice)).fetchall()
    assert ("Hidden Harry",) in rows
    photos = conn.execute(
        "SELECT original_file_name FROM immich_search.photos_of(%s, %s, 10)", (library["people"]["zhang"], alice)
    ).fetchall()
    assert [row[0] for row in photos] == ["party.jpg", "zs1.jpg", "zs2.jpg", "zs-archived.jpg"]
    dave = library["users"]["dave"]
    assert (
        conn.execute("SELECT * FROM immich_search.photos_of(%s, %s, 10)", (library["people"]["zhang"], dave)).fetchall()
        == []
    )


# ---------------------------------------------------------------------------------------------------------
# a photo file not in the library: faces through Immich's ML protocol

RED, BLUE, GREEN = (200, 30, 30), (30, 30, 200), (30, 200, 30)


def jpeg(rgb, size=(320, 240)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, rgb).save(out, format="JPEG")
    return out.getvalue()


def stand_in_ml(seen: list):
    """Immich's ML protocol (POST /predict, multipart entries + image) answering deterministic faces by the
    photo's colour: red holds a face 0.3 from 张三, one 0.4 from Hidden Harry and a stranger's; green a face
    0.6 from 张三 (beyond Immich's 0.5); blue none. Embeddings are JSON strings, as Immich's service sends."""

    async def predict(request: Request):
        form = await request.form()
        entries = json.loads(form["entries"])
        seen.append(entries)
        task = entries.get("facial-recognition", {})
        if task.get("detection", {}).get("options", {}).get("minScore") is None or "recognition" not in task:
            return JSONResponse({"detail": "bad entries"}, status_code=422)
        try:
            image = Image.open(io.BytesIO(await form["image"].read())).convert("RGB")
        except Exception:
            return JSONResponse({"detail": "invalid image"}, status_code=422)
        r, g, b = image.resize((1, 1)).getpixel((0, 0))
        if r > 150:
            embeddings = [near(ZHANG, 10, 0.3), near(HIDDEN, 11, 0.4), unit(40)]
        elif g > 150:
            embeddings = [near(ZHANG, 12, 0.6)]
        else:
            embeddings = []
        faces = [
            {
                "boundingBox": {"x1": 10 + 80 * i, "y1": 20, "x2": 60 + 80 * i, "y2": 90},
                "embedding": json.dumps(vector),
                "score": 0.9,
            }
            for i, vector in enumerate(embeddings)
        ]
        return JSONResponse({"facial-recognition": faces, "imageWidth": image.width, "imageHeight": image.height})

    return Starlette(routes=[Route("/predict", predict, methods=["POST"])])


@pytest.fixture(scope="module")
def ml_url():
    seen: list = []
    with running(stand_in_ml(seen)) as url:
        yield url, seen


def test_a_file_is_matched_to_the_callers_people(library, ml_url, tmp_path):
    url, seen = ml_url
    photo = tmp_path / "red.jpg"
    photo.write_bytes(jpeg(RED))
    report = as_json(library, str(photo), "--ml-url", url)
    assert seen[-1]["facial-recognition"]["detection"] == {"modelName": "buffalo_l", "options": {"minScore": 0.7}}
    assert report["asset_id"] is None and report["file"] == str(photo)
    assert [p["name"] for p in report["people"]] == ["张三"]
    assert names(library, report["people"][0]["photos"]) == ["party.jpg", "zs1.jpg", "zs2.jpg", "zs-archived.jpg"]
    assert report["unknown_faces"] == 1  # the stranger; Hidden Harry's face is left out
    assert abs(report["faces"][0]["distance"] - 0.3) < 1e-4
    hidden = as_json(library, str(photo), "--ml-url", url, "--include-hidden")
    assert [p["name"] for p in hidden["people"]] == ["张三", "Hidden Harry"]


def test_immichs_distance_threshold(library, ml_url, tmp_path):
    url, _ = ml_url
    photo = tmp_path / "green.jpg"
    photo.write_bytes(jpeg(GREEN))
    report = as_json(library, str(photo), "--ml-url", url)
    assert report["people"] == [] and report["unknown_faces"] == 1
    wider = as_json(library, str(photo), "--ml-url", url, "--max-distance", "0.65")
    assert [p["name"] for p in wider["people"]] == ["张三"]


def test_a_file_with_no_face_and_another_users_people(library, ml_url, tmp_path):
    url, _ = ml_url
    blue = tmp_path / "blue.jpg"
    blue.write_bytes(jpeg(BLUE))
    assert as_json(library, str(blue), "--ml-url", url)["faces"] == []
    red = tmp_path / "red.jpg"
    red.write_bytes(jpeg(RED))
    # dave has no people: every face is unknown to him.
    report = as_json(library, str(red), "--ml-url", url, user="dave@example.com")
    assert report["people"] == [] and report["unknown_faces"] == 3


def test_a_file_already_in_the_library_is_read_from_its_asset(library, ml_url, tmp_path):
    url, seen = ml_url
    data = jpeg((120, 120, 120))
    conn, alice = library["conn"], library["users"]["alice"]
    asset_id = immich_rows.insert_asset(conn, alice, "/data/upload/grey.jpg", "grey.jpg", hashlib.sha1(data).digest())
    immich_rows.insert_face(conn, asset_id, unit(BOB + 20), person_id=library["people"]["zhang"])
    photo = tmp_path / "grey.jpg"
    photo.write_bytes(data)
    before = len(seen)
    report = as_json(library, str(photo), "--ml-url", url)
    assert report["asset_id"] == asset_id and [p["name"] for p in report["people"]] == ["张三"]
    assert len(seen) == before  # no call to the ML service


def test_bad_input_is_one_clear_error(library, ml_url, tmp_path):
    url, _ = ml_url
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(jpeg(RED)[:200])
    result = run(library, str(corrupt), "--ml-url", url)
    assert result.exit_code == 1 and "is not a photo that can be read" in result.output, result.output
    missing = run(library, str(tmp_path / "nope.jpg"), "--ml-url", url)
    assert missing.exit_code == 1 and "cannot read" in missing.output
    photo = tmp_path / "red.jpg"
    photo.write_bytes(jpeg(RED))
    down = run(library, str(photo), "--ml-url", "http://127.0.0.1:9")
    assert down.exit_code == 1 and "cannot be reached" in down.output
    unknown = run(library, library["ids"]["party.jpg"], user="nobody@example.com")
    assert unknown.exit_code == 1 and "no Immich user" in unknown.output
    absent = run(library, "00000000-0000-4000-8000-000000000000")
    assert absent.exit_code == 1 and "that this user may see" in absent.output


def test_source_api_needs_immich_and_says_so():
    result = CliRunner().invoke(cli, ["people", "00000000-0000-4000-8000-000000000000", "--source", "api"], env={})
    assert result.exit_code == 2 and "--source api needs --immich-url and --api-key" in result.output
    result = CliRunner().invoke(
        cli,
        ["people", "00000000-0000-4000-8000-000000000000", "--source", "api"],
        env={"IMMICH_URL": "http://127.0.0.1:9", "IMMICH_API_KEY": "k"},
    )
    assert result.exit_code == 1 and "cannot be reached" in result.output and "Traceback" not in result.output
