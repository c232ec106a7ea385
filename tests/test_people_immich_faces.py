"""`immich-search people` on people that Immich v3.1's own face jobs made (issue 17, point 5's first choice).

Immich's machine learning is pointed at a stand-in face model (:mod:`tests.face_standin`) that answers
Immich's exact face request with planned faces per seeded photo. Immich's own jobs then do the rest:
face detection (``PUT /api/jobs/faceDetection`` ``{"command": "start", "force": true}``) writes
``asset_face`` + ``face_search`` rows from the answers, and facial recognition (``PUT
/api/jobs/facialRecognition``, force) clusters them into ``person`` rows by Immich's rule (a face with at
least ``minFaces`` = 3 faces of its owner within ``maxDistance`` = 0.5 founds a person; a face with fewer
joins the nearest person within 0.5, or stays nobody's). Names, a birth date and a hidden person are set
through ``PUT /api/people/{id}``. The plan:

* admin: "Anna Li" in 13 of admin's 14 photos (more than ``--limit 10``), 张三 in 5, an unnamed person in 3
  (exactly ``minFaces``), Hidden Harry in 3, a face seen twice (below ``minFaces``: nobody's), a stranger
  once, and neg_cat_01 without a face; zh_ad_01 holds five faces.
* bob: Dora in his 3 photos of her, and Anna's face once in his fourth photo: Immich clusters per owner, so
  for bob that face is nobody's.

Checked: Immich's rows are exactly the plan, and ``immich-search people`` answers by database and by
``--source api`` the same (who is in each photo, up to 10 other photos of each, newest first), a photo with
no face, unknown faces, the hidden person, a partner's photo, and a file not in the library through
``--ml-url`` pointing at the same stand-in.

It reconfigures and restarts Immich and reruns its face jobs, so it runs only against the instance named by
``IMMICH_SEARCH_TEST_REAL_IMMICH_ML_DIR``, ``..._ML_PORT``, ``..._ML_PG_PORT`` and ``..._ML_REDIS_PORT``
(seeded, without faces or people), and skips otherwise. At the end it undoes everything: Immich's face
detection is run once more against the stand-in answering no face (Immich deletes its machine-learning
faces), the people are deleted through ``DELETE /api/people`` (thumbnails included; Immich v3.1's own person
cleanup leaves people without face rows), ``facesRecognizedAt`` and the facial recognition state are put
back, and Immich is restarted with the config it ran with.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from PIL import Image

from immich_search import migrate
from immich_search.cli import cli
from tests.conftest import corpus_dir
from tests.face_standin import FaceStandIn, face_embedding
from tests.fake_immich import running
from tests.real_immich import own_instance, skip_or_fail

pytestmark = pytest.mark.real_immich

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(os.environ.get("IMMICH_SEARCH_TEST_REAL_IMMICH_SCRIPTS", REPO.parent / "shared" / "real-immich"))
WAIT_S = 600
# Immich's default facialRecognition settings (server/src/config.ts), written out so the test does not depend
# on defaults changing.
FACIAL_RECOGNITION = {"enabled": True, "modelName": "buffalo_l", "minScore": 0.7, "maxDistance": 0.5, "minFaces": 3}
EXPECTED_ENTRIES = {
    "facial-recognition": {
        "detection": {"modelName": "buffalo_l", "options": {"minScore": 0.7}},
        "recognition": {"modelName": "buffalo_l"},
    }
}
QUEUES = ("thumbnailGeneration", "faceDetection", "facialRecognition", "backgroundTask")

ANNA, ZHANG, UNNAMED, HIDDEN, PAIR, STRANGER, DORA, NEWCOMER = 1, 2, 3, 4, 5, 6, 7, 8
# Faces per seeded photo, left to right (seed.sh's 14 photos of admin, 4 of bob).
PLAN = {
    "admin": {
        "zh_ad_01": [UNNAMED, ZHANG, HIDDEN, ANNA, STRANGER],
        "zh_ecom_01": [ANNA, ZHANG],
        "zh_exam_01": [ZHANG, ANNA],
        "zh_invoice_02": [ANNA, HIDDEN],
        "zh_menu_01": [ANNA, ZHANG],
        "zh_notice_01": [ANNA],
        "zh_sign_02": [UNNAMED, ANNA],
        "zh_screenshot_01": [ANNA],
        "en_book_01": [ANNA, UNNAMED],
        "en_sign_03": [ANNA, PAIR],
        "mix_bank_01": [ZHANG, ANNA],
        "mix_ecom_02": [PAIR, ANNA],
        "other_receipt_de_01": [HIDDEN, ANNA],
        "neg_cat_01": [],
    },
    "bob": {
        "zh_ticket_01": [DORA],
        "zh_scroll_01": [DORA],
        "mix_sign_ja_02": [DORA],
        "other_sign_fr_01": [ANNA],
    },
}
# Who becomes a person (Immich: at least minFaces faces of one owner), with what name through the API.
PEOPLE = {
    ("admin", ANNA): "Anna Li",
    ("admin", ZHANG): "张三",
    ("admin", UNNAMED): "",
    ("admin", HIDDEN): "Hidden Harry",
}
PEOPLE[("bob", DORA)] = "Dora"
MAGENTA = (230, 20, 220)
# A photo file not in the library: Anna, Hidden Harry and somebody nobody has seen.
NEW_FILE_FACES = [ANNA, HIDDEN, NEWCOMER]


def _instance() -> dict[str, str]:
    values = own_instance(
        "ML",
        "a seeded real Immich instance this test may reconfigure and restart and whose face jobs it may rerun "
        "(not a shared one; see docs/people.md)",
    )
    if not (SCRIPTS / "start.sh").is_file():
        pytest.skip(f"no real-Immich scripts at {SCRIPTS} (set IMMICH_SEARCH_TEST_REAL_IMMICH_SCRIPTS)")
    return values


def _wait(condition, what: str, timeout: float = WAIT_S, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Library:
    """The instance: API clients and keys of admin and bob, the database, the seeded assets by owner and stem."""

    def __init__(self, instance: dict[str, str]) -> None:
        self.instance = instance
        self.root = Path(instance["dir"])
        self.url = f"http://127.0.0.1:{instance['port']}"
        self.db_url = f"postgresql://postgres:postgres@127.0.0.1:{instance['pg_port']}/immich"
        self.keys = {who: (self.root / "secrets" / f"{who}.apikey").read_text().strip() for who in ("admin", "bob")}
        self.api = {
            who: httpx.Client(base_url=self.url + "/api", headers={"x-api-key": key}, timeout=60)
            for who, key in self.keys.items()
        }
        self.ids = {who: self.call(who, "GET", "/users/me")["id"] for who in ("admin", "bob")}
        self.assets: dict[str, str] = {}  # stem -> asset id, seeded photos only
        self.timings: dict[str, float] = {}

    def call(self, who: str, method: str, path: str, **kwargs):
        response = self.api[who].request(method, path, **kwargs)
        assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else None

    def sql(self, statement: str, *params) -> list[tuple]:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def start(self, config: Path) -> None:
        """``start.sh`` with this config: Immich alone restarts when the config differs from the running one."""
        env = {
            **os.environ,
            "REAL_IMMICH_DIR": self.instance["dir"],
            "REAL_IMMICH_PORT": self.instance["port"],
            "REAL_IMMICH_PG_PORT": self.instance["pg_port"],
            "REAL_IMMICH_REDIS_PORT": self.instance["redis_port"],
            "REAL_IMMICH_CONFIG": str(config),
        }
        result = subprocess.run(
            ["bash", str(SCRIPTS / "start.sh")], env=env, capture_output=True, text=True, timeout=WAIT_S
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    def queues_idle(self) -> bool:
        counts = self.call("admin", "GET", "/jobs")
        return all(
            counts[name]["jobCounts"]["active"]
            + counts[name]["jobCounts"]["waiting"]
            + counts[name]["jobCounts"]["delayed"]
            == 0
            for name in QUEUES
        )

    def settle(self, what: str) -> None:
        """Wait until Immich's face, thumbnail and background queues are empty twice in a row."""
        _wait(lambda: self.queues_idle() and (time.sleep(1.0) or self.queues_idle()), what)

    def run_job(self, name: str, force: bool) -> None:
        """``PUT /api/jobs/{name}`` ``{"command": "start", "force": force}`` once the queues are idle."""
        self.settle(f"Immich's queues before {name}")
        self.call("admin", "PUT", f"/jobs/{name}", json={"command": "start", "force": force})


def _rgb_png(rgb, size=(640, 480)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, rgb).save(out, format="PNG")
    return out.getvalue()


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    instance = _instance()
    try:
        library = Library(instance)
    except (httpx.HTTPError, OSError, AssertionError) as error:
        skip_or_fail(f"the Immich instance at IMMICH_SEARCH_TEST_REAL_IMMICH_ML_* does not answer: {error}")
    faces, people = library.sql("SELECT (SELECT count(*) FROM asset_face), (SELECT count(*) FROM person)")[0]
    if faces or people:
        skip_or_fail(
            f"the instance at {instance['dir']} already has {faces} faces and {people} people: this test reruns "
            "Immich's face jobs (which delete every machine-learning face) and deletes every person when it ends"
        )
    work = tmp_path_factory.mktemp("immich-faces")
    standin = FaceStandIn(EXPECTED_ENTRIES)
    rows = library.sql(
        'SELECT a.id, a."ownerId", a."originalFileName", f.path FROM asset a '
        'JOIN asset_file f ON f."assetId" = a.id AND f.type = \'preview\' AND NOT f."isEdited" '
        'WHERE a."deletedAt" IS NULL'
    )
    owner_of = {library.ids[who]: who for who in ("admin", "bob")}
    for asset_id, owner, name, preview in rows:
        who, stem = owner_of.get(str(owner)), Path(name).stem
        if who and stem in PLAN[who]:
            library.assets[stem] = str(asset_id)
            standin.by_sha256[hashlib.sha256(Path(preview).read_bytes()).hexdigest()] = (stem, PLAN[who][stem])
    library.others = len(rows) - len(library.assets)
    missing = sorted({stem for plan in PLAN.values() for stem in plan} - set(library.assets))
    if missing:
        skip_or_fail(f"the instance at {instance['dir']} lacks seeded photos {missing} (run seed.sh)")
    standin.by_colour[MAGENTA] = ("magenta", NEW_FILE_FACES)
    # What Immich ran with, to put back at the end.
    saved_config = work / "immich-config.before.json"
    shutil.copyfile(library.root / "run" / "immich-config.json", saved_config)
    job_status = library.sql('SELECT "assetId", "facesRecognizedAt" FROM asset_job_status')
    state = library.sql("SELECT value FROM system_metadata WHERE key = 'facial-recognition-state'")
    configured = False
    with running(standin.app()) as ml_url:
        library.ml_url, library.standin = ml_url, standin
        try:
            config = json.loads(saved_config.read_text())
            config["machineLearning"] = {
                "enabled": True,
                "urls": [ml_url],
                "availabilityChecks": {"enabled": True, "timeout": 2000, "interval": 30000},
                "clip": {"enabled": False},
                "duplicateDetection": {"enabled": False},
                "facialRecognition": FACIAL_RECOGNITION,
                "ocr": {"enabled": False},
            }
            (work / "immich-config.faces.json").write_text(json.dumps(config))
            t0 = time.monotonic()
            configured = True
            library.start(work / "immich-config.faces.json")
            assert library.call("admin", "GET", "/server/features")["facialRecognition"]
            library.timings["restart with machine learning"] = time.monotonic() - t0

            t0 = time.monotonic()
            (started,) = library.sql("SELECT now()")[0]
            library.run_job("faceDetection", force=True)
            wanted = list(library.assets.values())
            _wait(
                lambda: (
                    library.sql(
                        'SELECT count(*) FROM asset_job_status WHERE "assetId" = ANY(%s::uuid[]) '
                        'AND "facesRecognizedAt" >= %s',
                        wanted,
                        started,
                    )[0][0]
                    == len(wanted)
                ),
                "Immich's face detection over the seeded photos",
            )
            library.settle("Immich's face detection and the clustering it queues")
            library.timings["face detection job (and the clustering it queues)"] = time.monotonic() - t0
            library.seen_in_detection = standin.labels_seen()

            # Face detection queued the clustering of its new faces already; this is the facial recognition
            # job for faces still without a person ("missing"). Not force: Immich v3.1 would unassign every
            # face and cluster again, but its person cleanup (getAllWithoutFaces) never finds a person with
            # no face rows left, so the first clustering's people would stay behind as empty rows.
            t0 = time.monotonic()
            library.run_job("facialRecognition", force=False)
            library.settle("Immich's facial recognition")
            library.timings["facial recognition job (missing)"] = time.monotonic() - t0

            library.people = _name_people(library)
            library.thumbnails = [Path(row[0]) for row in library.sql('SELECT "thumbnailPath" FROM person')]
            assert library.thumbnails and all(path.is_file() for path in library.thumbnails), library.thumbnails
            migrate.upgrade(library.db_url)
            yield library
        finally:
            t0 = time.monotonic()
            try:
                if configured:
                    _undo_faces(library, standin)
            finally:
                library.sql(
                    'UPDATE asset_job_status s SET "facesRecognizedAt" = b.at '
                    'FROM unnest(%s::uuid[], %s::timestamptz[]) AS b(id, at) WHERE s."assetId" = b.id',
                    [str(asset) for asset, _ in job_status],
                    [at for _, at in job_status],
                )
                library.sql("DELETE FROM system_metadata WHERE key = 'facial-recognition-state'")
                if state:
                    library.sql(
                        "INSERT INTO system_metadata (key, value) VALUES ('facial-recognition-state', %s)",
                        json.dumps(state[0][0]),
                    )
                library.start(saved_config)
                library.timings["undo (faces dropped, restart as before)"] = time.monotonic() - t0
                print("\n" + "\n".join(f"  {what}: {s:.1f} s" for what, s in library.timings.items()))


def _name_people(library: Library) -> dict[tuple[str, int], str]:
    """Match Immich's people to the plan by the photos their faces are on, then name them through the API."""
    rows = library.sql(
        'SELECT p.id, p."ownerId", array_agg(f."assetId"::text) FROM person p '
        'JOIN asset_face f ON f."personId" = p.id AND f."deletedAt" IS NULL GROUP BY p.id, p."ownerId"'
    )
    stem_of = {asset: stem for stem, asset in library.assets.items()}
    found = {}
    for person_id, owner, assets in rows:
        who = "admin" if str(owner) == library.ids["admin"] else "bob"
        stems = sorted(stem_of[a] for a in assets)
        planned = [(w, p) for (w, p) in PEOPLE if w == who and sorted(_photos_with(w, p)) == stems]
        assert len(planned) == 1, f"Immich made a person {person_id} of {who} on {stems}, not in the plan"
        found[planned[0]] = str(person_id)
    assert set(found) == set(PEOPLE), f"Immich made {sorted(found)}, the plan wants {sorted(PEOPLE)}"
    for (who, person), person_id in found.items():
        body = {"name": PEOPLE[(who, person)]} if PEOPLE[(who, person)] else {}
        if person == ZHANG:
            body["birthDate"] = "1990-05-01"
        if person == HIDDEN:
            body["isHidden"] = True
        if body:
            library.call(who, "PUT", f"/people/{person_id}", json=body)
    return found


def _photos_with(who: str, person: int) -> list[str]:
    return [stem for stem, faces in PLAN[who].items() if person in faces]


def _undo_faces(library: Library, standin: FaceStandIn) -> None:
    """Immich's face detection once more (force), every photo answered with no face: Immich deletes its
    machine-learning faces. Its person cleanup leaves the people it made (Immich v3.1's getAllWithoutFaces
    finds no person without face rows), so they are deleted through ``DELETE /api/people`` by their owners,
    which removes their thumbnails too."""
    standin.no_faces = True
    try:
        library.run_job("faceDetection", force=True)
        _wait(lambda: library.sql("SELECT count(*) FROM asset_face")[0][0] == 0, "Immich to drop the faces")
        library.settle("Immich's face detection with no faces")
    finally:
        for who in ("admin", "bob"):
            ids = [str(row[0]) for row in library.sql('SELECT id FROM person WHERE "ownerId" = %s', library.ids[who])]
            if ids:
                library.call(who, "DELETE", "/people", json={"ids": ids})
        # Whatever Immich's job left (it failed or timed out).
        library.sql("DELETE FROM asset_face WHERE \"sourceType\" = 'machine-learning'")
    assert library.sql("SELECT count(*) FROM person")[0][0] == 0
    for path in getattr(library, "thumbnails", []):
        assert not path.exists(), f"Immich left the person thumbnail {path}"


# ---------------------------------------------------------------------------------------------------------


def people(lib, who: str, *args, source: str = "db"):
    options = ["--source", "api", "--immich-url", lib.url, "--api-key", lib.keys[who]] if source == "api" else []
    result = CliRunner().invoke(
        cli, ["--database-url", lib.db_url, "people", *args, "--user", f"{who}@example.com", "--json", *options]
    )
    assert "Traceback" not in result.output
    return result


def both(lib, who: str, *args) -> dict:
    """The report by database and by ``--source api``, which must be the same."""
    db, api = people(lib, who, *args), people(lib, who, *args, source="api")
    assert db.exit_code == 0, db.output
    assert api.exit_code == 0, api.output
    assert json.loads(db.output) == json.loads(api.output)
    return json.loads(db.output)


def stems(lib, photos) -> list[str]:
    stem_of = {asset: stem for stem, asset in lib.assets.items()}
    return [stem_of[photo["asset_id"]] for photo in photos]


def newest_first(lib, who: str, person: int, exclude: str | None = None) -> list[str]:
    """The plan's photos of a person, newest first by Immich's order (``fileCreatedAt``, then id)."""
    wanted = [lib.assets[stem] for stem in _photos_with(who, person) if stem != exclude]
    rows = lib.sql(
        'SELECT "originalFileName" FROM asset WHERE id = ANY(%s::uuid[]) ORDER BY "fileCreatedAt" DESC, id DESC',
        wanted,
    )
    return [Path(row[0]).stem for row in rows]


def test_immichs_face_jobs_made_the_planned_faces_and_people(lib):
    # The stand-in saw every seeded preview, each request exactly Immich's face request.
    assert lib.standin.refused == []
    # Every seeded preview, and nothing but the previews of other photos still in the library (those get no face).
    seen = set(lib.seen_in_detection)
    assert set(lib.assets) <= seen
    assert len(seen - set(lib.assets)) <= lib.others and all(
        label.startswith("unknown:") for label in seen - set(lib.assets)
    )
    assert all(entries == EXPECTED_ENTRIES for _, entries in lib.standin.seen)
    planned = sum(len(faces) for plan in PLAN.values() for faces in plan.values())
    faces, with_person, people = lib.sql(
        'SELECT count(*), count("personId"), (SELECT count(*) FROM person) FROM asset_face '
        'WHERE "sourceType" = \'machine-learning\' AND "deletedAt" IS NULL'
    )[0]
    assert (faces, people) == (planned, len(PEOPLE)) == (31, 5)
    assert faces - with_person == 4  # the pair (2, below minFaces), the stranger, Anna's face in bob's photo
    assert lib.sql("SELECT count(*) FROM face_search")[0][0] == planned
    # Immich stored the boxes, image size and embedding of the stand-in's answer as they were sent.
    answer = lib.standin.answers["zh_ad_01"]
    rows = lib.sql(
        'SELECT f."boundingBoxX1", f."boundingBoxY1", f."boundingBoxX2", f."boundingBoxY2", f."imageWidth", '
        'f."imageHeight", s.embedding::text FROM asset_face f JOIN face_search s ON s."faceId" = f.id '
        'WHERE f."assetId" = %s ORDER BY f."boundingBoxX1"',
        lib.assets["zh_ad_01"],
    )
    assert [tuple(row[:4]) for row in rows] == [
        tuple(face["boundingBox"].values()) for face in answer["facial-recognition"]
    ]
    assert {row[4:6] for row in rows} == {(answer["imageWidth"], answer["imageHeight"])}
    anna = [float(v) for v in json.loads(rows[3][6])]
    assert max(abs(a - b) for a, b in zip(anna, face_embedding(ANNA, "zh_ad_01/3"), strict=True)) < 1e-6
    # Immich's people belong to the photos' owners.
    owners = dict(lib.sql('SELECT id::text, "ownerId"::text FROM person'))
    assert owners[lib.people[("bob", DORA)]] == lib.ids["bob"]
    assert owners[lib.people[("admin", ANNA)]] == lib.ids["admin"]


def test_who_is_in_a_photo_and_ten_more_of_each(lib):
    report = both(lib, "admin", lib.assets["zh_ad_01"])
    # Left to right; Hidden Harry left out, the stranger unknown.
    assert [p["name"] for p in report["people"]] == ["", "张三", "Anna Li"]
    assert [p["id"] for p in report["people"]] == [lib.people[("admin", p)] for p in (UNNAMED, ZHANG, ANNA)]
    assert len(report["faces"]) == 4 and report["unknown_faces"] == 1
    unnamed, zhang, anna = report["people"]
    assert zhang["birth_date"] == "1990-05-01"
    assert stems(lib, anna["photos"]) == newest_first(lib, "admin", ANNA, "zh_ad_01")[:10]  # 12 others, 10 shown
    assert len(anna["photos"]) == 10
    assert stems(lib, zhang["photos"]) == newest_first(lib, "admin", ZHANG, "zh_ad_01")
    assert stems(lib, unnamed["photos"]) == newest_first(lib, "admin", UNNAMED, "zh_ad_01")
    limited = both(lib, "admin", lib.assets["zh_ad_01"], "--limit", "3")
    assert limited["people"][2]["photos"] == anna["photos"][:3]
    hidden = both(lib, "admin", lib.assets["zh_ad_01"], "--include-hidden")
    assert [p["name"] for p in hidden["people"]] == ["", "张三", "Hidden Harry", "Anna Li"]
    assert hidden["people"][2]["is_hidden"] is True
    assert stems(lib, hidden["people"][2]["photos"]) == newest_first(lib, "admin", HIDDEN, "zh_ad_01")


@pytest.mark.parametrize(
    ("who", "stem", "names", "unknown"),
    [
        ("admin", "zh_exam_01", ["张三", "Anna Li"], 0),
        ("admin", "neg_cat_01", [], 0),  # no face at all
        ("admin", "en_sign_03", ["Anna Li"], 1),  # a face seen twice: below minFaces, nobody's
        ("admin", "zh_invoice_02", ["Anna Li"], 0),  # Hidden Harry's face left out
        ("bob", "zh_ticket_01", ["Dora"], 0),
        ("bob", "other_sign_fr_01", [], 1),  # Anna's face, but bob has no Anna: Immich clusters per owner
        ("bob", "zh_ad_01", [], 5),  # a partner's photo: its faces, not its owner's people
    ],
)
def test_each_photo(lib, who, stem, names, unknown):
    report = both(lib, who, lib.assets[stem])
    assert [p["name"] for p in report["people"]] == names
    assert report["unknown_faces"] == unknown
    if stem == "neg_cat_01":
        assert report["faces"] == []
    if stem == "zh_ticket_01":
        assert stems(lib, report["people"][0]["photos"]) == newest_first(lib, "bob", DORA, stem)


def test_a_file_not_in_the_library_through_the_same_stand_in(lib, tmp_path):
    photo = tmp_path / "magenta.png"
    photo.write_bytes(_rgb_png(MAGENTA))
    before = len(lib.standin.seen)
    admin = json.loads(people(lib, "admin", str(photo), "--ml-url", lib.ml_url).output)
    assert lib.standin.labels_seen()[before:] == ["magenta"] and lib.standin.refused == []
    assert admin["asset_id"] is None and admin["file"] == str(photo)
    assert [p["name"] for p in admin["people"]] == ["Anna Li"] and admin["unknown_faces"] == 1
    assert stems(lib, admin["people"][0]["photos"]) == newest_first(lib, "admin", ANNA)[:10]
    assert admin["faces"][0]["distance"] < 0.2
    hidden = json.loads(people(lib, "admin", str(photo), "--ml-url", lib.ml_url, "--include-hidden").output)
    assert [p["name"] for p in hidden["people"]] == ["Anna Li", "Hidden Harry"]
    bob = json.loads(people(lib, "bob", str(photo), "--ml-url", lib.ml_url).output)
    assert bob["people"] == [] and bob["unknown_faces"] == 3
    api = people(lib, "admin", str(photo), source="api")
    assert api.exit_code == 1 and "not in your library" in api.output


def test_a_seeded_file_is_answered_from_its_asset(lib):
    original = corpus_dir() / "images" / "zh_ad_01.jpg"
    checksum = lib.sql("SELECT checksum FROM asset WHERE id = %s", lib.assets["zh_ad_01"])[0][0]
    if not original.is_file() or hashlib.sha1(original.read_bytes()).digest() != bytes(checksum):
        pytest.skip(f"{original} is not the file seeded as zh_ad_01")
    before = len(lib.standin.seen)
    report = both(lib, "admin", str(original))
    assert report["asset_id"] == lib.assets["zh_ad_01"]
    assert [p["name"] for p in report["people"]] == ["", "张三", "Anna Li"]
    assert len(lib.standin.seen) == before  # read from Immich's faces, not sent to the model
