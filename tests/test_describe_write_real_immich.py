"""``--write-immich none|missing|all`` against the real Immich v3.1 server: descriptions from the stand-in
vision server written into Immich's own description field through its API, with the owner's key.

Checked through Immich's own API only (``GET /api/assets/{id}``, ``PUT /api/assets/{id}``, and its metadata
search's ``description`` filter): ``none`` never calls Immich; ``missing`` fills empty descriptions, keeps a
person's text, replaces our own older text on a later run and never a person's edit of it; ``all`` replaces
everything; an asset whose owner has no key, an unreachable Immich and a wrong key fail the job with a clear
reason while the description stays in our table, and a later run writes it without asking the model again.

The test changes Immich (descriptions, and the XMP sidecars Immich writes with them), so it runs only against
an instance of its own, named by ``IMMICH_SEARCH_TEST_REAL_IMMICH_ML_DIR`` (that instance's seeded
``REAL_IMMICH_DIR``) with ``IMMICH_SEARCH_TEST_REAL_IMMICH_ML_PORT``, ``..._PG_PORT`` and ``..._REDIS_PORT``;
it skips otherwise. At the end every description it changed is put back as it was, and its rows in schema
``immich_search`` are removed.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.ml_fixtures import free_port
from tests.real_immich import immich_search_command, own_instance, product_env
from tests.vision_standin import VisionStandIn

pytestmark = pytest.mark.real_immich

ADMIN_PHOTOS = ("zh_ad_01.jpg", "zh_notice_01.jpg")  # seeded by ../shared/real-immich/seed.sh
BOB_PHOTO = "zh_ticket_01.jpg"
MODEL = "stand-in-vl"


@dataclass
class Instance:
    """The Immich instance under test and what the test changed in it."""

    url: str
    db_url: str
    media: str
    keys: dict[str, str]  # user id -> API key
    admin_id: str
    bob_id: str
    ids: dict[str, str] = field(default_factory=dict)  # original file name -> asset id
    owners: dict[str, str] = field(default_factory=dict)  # asset id -> owner id
    before: dict[str, str] = field(default_factory=dict)  # asset id -> description before the test

    def api(self, user_id: str) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api", headers={"x-api-key": self.keys[user_id]}, timeout=30)

    def description(self, asset_id: str) -> str:
        """Immich's description of the asset, as its owner sees it."""
        with self.api(self.owners[asset_id]) as client:
            response = client.get(f"/assets/{asset_id}")
            response.raise_for_status()
            return response.json()["exifInfo"]["description"] or ""

    def set_description(self, asset_id: str, text: str) -> None:
        """Type a description as a person would in Immich (``PUT /api/assets/{id}``, the owner's key)."""
        with self.api(self.owners[asset_id]) as client:
            client.put(f"/assets/{asset_id}", json={"description": text}).raise_for_status()

    def search_description(self, user_id: str, text: str) -> set[str]:
        """Immich's own metadata search with its ``description`` filter."""
        with self.api(user_id) as client:
            response = client.post("/search/metadata", json={"description": text, "size": 100})
            response.raise_for_status()
            return {item["id"] for item in response.json()["assets"]["items"]}

    def ours(self, asset_id: str) -> str | None:
        """Our stored description of the asset (immich_search.description)."""
        with psycopg.connect(self.db_url) as conn:
            row = conn.execute("SELECT text FROM immich_search.description WHERE asset_id = %s", (asset_id,)).fetchone()
        return row[0] if row else None

    def record(self, asset_id: str) -> tuple | None:
        """Our record of what was written: (written_text, sha256 matches, written_by, pending, last_error)."""
        with psycopg.connect(self.db_url) as conn:
            return conn.execute(
                "SELECT written_text, written_sha256 = sha256(convert_to(written_text, 'UTF8')), written_by::text, "
                "pending_preview_update_id IS NOT NULL, last_error "
                "FROM immich_search.immich_description WHERE asset_id = %s",
                (asset_id,),
            ).fetchone()

    def describe(
        self, standin: VisionStandIn, asset_ids: list[str], mode: str, keys: list[str], url: str | None = None
    ) -> subprocess.CompletedProcess:
        """``immich-search reprocess IDS --describe --write-immich MODE`` as a user runs it."""
        args = [
            *immich_search_command(),
            "--database-url",
            self.db_url,
            "reprocess",
            *asset_ids,
            "--describe",
            "--media-root",
            self.media,
            "--immich-media-location",
            self.media,
            "--describe-host",
            standin.url,
            "--describe-model",
            MODEL,
            "--write-immich",
            mode,
        ]
        if mode != "none":
            args += ["--immich-url", url or self.url, "--api-key", ",".join(keys)]
        return subprocess.run(args, env=product_env(), capture_output=True, text=True, timeout=300)


def _instance_or_skip() -> Instance:
    values = own_instance(
        "ML", "a seeded real Immich instance this test may change (not a shared one; see docs/describe.md, Testing)"
    )
    root = Path(values["dir"])
    secrets = root / "secrets"
    ids = dict(line.split("=", 1) for line in (secrets / "ids.env").read_text().split() if "=" in line)
    admin_id, bob_id = ids["ADMIN_ID"], ids["BOB_ID"]
    keys = {
        admin_id: (secrets / "admin.apikey").read_text().strip(),
        bob_id: (secrets / "bob.apikey").read_text().strip(),
    }
    return Instance(
        url=f"http://127.0.0.1:{values['port']}",
        db_url=f"postgresql://postgres:postgres@127.0.0.1:{values['pg_port']}/immich",
        media=str(root / "media"),
        keys=keys,
        admin_id=admin_id,
        bob_id=bob_id,
    )


@pytest.fixture(scope="module")
def immich() -> Iterator[Instance]:
    instance = _instance_or_skip()
    try:
        httpx.get(instance.url + "/api/server/ping", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.skip(f"the real Immich instance at {instance.url} does not answer ({exc}): start it first")
    result = subprocess.run(
        [*immich_search_command(), "--database-url", instance.db_url, "migrate"],
        env=product_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with psycopg.connect(instance.db_url) as conn:
        rows = conn.execute(
            'SELECT id::text, "originalFileName", "ownerId"::text FROM public.asset '
            'WHERE "originalFileName" = ANY(%s) AND "deletedAt" IS NULL',
            ([*ADMIN_PHOTOS, BOB_PHOTO],),
        ).fetchall()
        had_model = conn.execute("SELECT 1 FROM immich_search.setting WHERE key = 'describe_model'").fetchone()
    assert len(rows) == 3, f"the seeded photos {ADMIN_PHOTOS + (BOB_PHOTO,)} are not all in {instance.url}"
    for asset_id, name, owner in rows:
        instance.ids[name] = asset_id
        instance.owners[asset_id] = owner
    for asset_id in instance.owners:
        instance.before[asset_id] = instance.description(asset_id)
    try:
        yield instance
    finally:
        for asset_id, text in instance.before.items():
            if instance.description(asset_id) != text:
                instance.set_description(asset_id, text)
        with psycopg.connect(instance.db_url) as conn:
            touched = list(instance.owners)
            conn.execute("DELETE FROM immich_search.immich_description WHERE asset_id = ANY(%s::uuid[])", (touched,))
            conn.execute("DELETE FROM immich_search.description WHERE asset_id = ANY(%s::uuid[])", (touched,))
            conn.execute(
                "DELETE FROM immich_search.job WHERE task = 'describe' AND asset_id = ANY(%s::uuid[])", (touched,)
            )
            if not had_model:
                conn.execute("DELETE FROM immich_search.setting WHERE key = 'describe_model'")


@pytest.fixture
def fresh(immich: Instance) -> Instance:
    """The three photos with an empty description in Immich and nothing of ours about them."""
    for asset_id in immich.owners:
        if immich.description(asset_id):
            immich.set_description(asset_id, "")
    with psycopg.connect(immich.db_url) as conn:
        touched = list(immich.owners)
        conn.execute("DELETE FROM immich_search.immich_description WHERE asset_id = ANY(%s::uuid[])", (touched,))
        conn.execute("DELETE FROM immich_search.description WHERE asset_id = ANY(%s::uuid[])", (touched,))
    return immich


def test_none_never_calls_immich(fresh: Instance):
    photo = fresh.ids[ADMIN_PHOTOS[0]]
    with VisionStandIn("ollama") as standin:
        result = fresh.describe(standin, [photo], "none", [])
    assert result.returncode == 0, result.stdout + result.stderr
    assert fresh.ours(photo)  # described and stored
    assert fresh.description(photo) == ""  # Immich untouched
    assert fresh.record(photo) is None


def test_missing_fills_empty_keeps_a_persons_text_and_replaces_only_our_own(fresh: Instance):
    empty, written_by_person = (fresh.ids[name] for name in ADMIN_PHOTOS)
    person = "我写的说明: grandma's birthday"
    fresh.set_description(written_by_person, person)
    admin_key = fresh.keys[fresh.admin_id]
    with VisionStandIn("ollama") as standin:
        first = f" run-{uuid.uuid4().hex[:10]}"
        standin.suffix = first
        result = fresh.describe(standin, [empty, written_by_person], "missing", [admin_key])
        assert result.returncode == 0, result.stdout + result.stderr
        ours = fresh.ours(empty)
        assert ours and ours.endswith(first)
        assert fresh.description(empty) == ours  # filled
        assert fresh.description(written_by_person) == person  # a person's text is kept
        assert fresh.ours(written_by_person), "the description is stored in our table all the same"
        assert fresh.record(empty) == (ours, True, fresh.admin_id, False, None)
        assert fresh.record(written_by_person)[0] is None  # nothing of ours was written there
        assert (
            "into Immich (--write-immich missing): 1 description(s) written, 1 written by a person kept, "
            "0 not written yet" in result.stdout
        )
        status = subprocess.run(
            [*immich_search_command(), "--database-url", fresh.db_url, "status"],
            env=product_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert (
            "descriptions into Immich (--write-immich): 1 written, 1 written by a person kept, 0 in the locked "
            "folder left alone, 0 not written yet" in " ".join(status.stdout.split())
        )
        # Immich's own search finds the words we wrote.
        assert fresh.search_description(fresh.admin_id, first.strip()) == {empty}
        assert empty in fresh.search_description(fresh.admin_id, "放风筝")

        # A later run replaces our own older text, never the person's.
        second = f" run-{uuid.uuid4().hex[:10]}"
        standin.suffix = second
        result = fresh.describe(standin, [empty, written_by_person], "missing", [admin_key])
        assert result.returncode == 0, result.stdout + result.stderr
        newer = fresh.ours(empty)
        assert newer.endswith(second) and fresh.description(empty) == newer
        assert fresh.description(written_by_person) == person
        assert fresh.search_description(fresh.admin_id, first.strip()) == set()
        assert fresh.search_description(fresh.admin_id, second.strip()) == {empty}

        # A person edits our text: `missing` never overwrites the edit.
        edited = newer + " (checked: it is Lisa, not a kite)"
        fresh.set_description(empty, edited)
        standin.suffix = f" run-{uuid.uuid4().hex[:10]}"
        result = fresh.describe(standin, [empty], "missing", [admin_key])
        assert result.returncode == 0, result.stdout + result.stderr
        assert fresh.description(empty) == edited
        assert fresh.record(empty)[0] == newer  # the record still says what we wrote, not the edit

        # `all` replaces everything, a person's text included.
        third = f" run-{uuid.uuid4().hex[:10]}"
        standin.suffix = third
        result = fresh.describe(standin, [empty, written_by_person], "all", [admin_key])
        assert result.returncode == 0, result.stdout + result.stderr
        for asset_id in (empty, written_by_person):
            assert fresh.description(asset_id) == fresh.ours(asset_id) and fresh.ours(asset_id).endswith(third)
            assert fresh.record(asset_id)[:4] == (fresh.ours(asset_id), True, fresh.admin_id, False)
        assert fresh.search_description(fresh.admin_id, third.strip()) == {empty, written_by_person}
    assert not standin.bad


def test_an_owner_without_a_key_is_reported_and_written_later_without_the_model(fresh: Instance):
    bobs = fresh.ids[BOB_PHOTO]
    admin_key, bob_key = fresh.keys[fresh.admin_id], fresh.keys[fresh.bob_id]
    with VisionStandIn("ollama") as standin:
        result = fresh.describe(standin, [bobs], "missing", [admin_key])
        assert result.returncode == 1, result.stdout + result.stderr
        output = " ".join((result.stdout + result.stderr).split())
        assert "no key of the asset's owner" in output and fresh.bob_id in output
        assert "Traceback" not in output
        stored = fresh.ours(bobs)
        assert stored, "the description is kept in our table"
        assert fresh.description(bobs) == ""
        assert fresh.record(bobs)[3] is True  # still to be written
        asked = len(standin.requests)
        # With bob's key the stored description is written; the vision model is not asked again.
        result = fresh.describe(standin, [bobs], "missing", [admin_key, bob_key])
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(standin.requests) == asked
    assert fresh.description(bobs) == stored
    assert fresh.record(bobs) == (stored, True, fresh.bob_id, False, None)
    assert bobs in fresh.search_description(fresh.bob_id, "放风筝")


class BusyImmich:
    """A server in Immich's place that answers every request 503 (Immich restarting behind a proxy)."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                self.send_response(503)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_GET  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def fault_setup(immich: Instance, fault: str) -> Iterator[tuple[str | None, str, str]]:
    """``(Immich URL or None for the real one, API key, what the error must say)`` for a fault."""
    admin_key = immich.keys[immich.admin_id]
    if fault == "unreachable":
        url = f"http://127.0.0.1:{free_port()}"
        yield url, admin_key, f"cannot reach Immich at {url}"
    elif fault == "busy":
        busy = BusyImmich()
        try:
            yield busy.url, admin_key, f"cannot reach Immich at {busy.url}: Immich answered 503"
        finally:
            busy.close()
    elif fault == "wrong key":
        yield None, "not-a-key-" + uuid.uuid4().hex, "refused API key #1 of IMMICH_API_KEY (401"
    else:  # a key of the owner that may read but not change assets
        with immich.api(immich.admin_id) as client:
            response = client.post(
                "/api-keys", json={"name": "describe-write test", "permissions": ["user.read", "asset.read"]}
            )
            response.raise_for_status()
            created = response.json()
            try:
                yield None, created["secret"], "(403: Missing required permission: asset.update)"
            finally:
                client.delete(f"/api-keys/{created['apiKey']['id']}").raise_for_status()


@pytest.mark.parametrize("fault", ["unreachable", "busy", "wrong key", "read-only key"])
def test_immich_faults_give_a_clear_error_and_keep_the_description(fresh: Instance, fault: str):
    photo = fresh.ids[ADMIN_PHOTOS[0]]
    admin_key = fresh.keys[fresh.admin_id]
    with VisionStandIn("ollama") as standin, fault_setup(fresh, fault) as (url, key, says):
        result = fresh.describe(standin, [photo], "missing", [key], url=url)
        assert result.returncode == 1, result.stdout + result.stderr
        output = " ".join((result.stdout + result.stderr).split())
        assert "Traceback" not in output
        assert "description stored; not written into Immich" in output and says in output
        assert "0 description(s) written, 0 written by a person kept, 1 not written yet" in output
        assert key not in output  # a key is never printed
        stored = fresh.ours(photo)
        assert stored and fresh.description(photo) == ""
        written, _, _, pending, error = fresh.record(photo)
        assert written is None and pending and says in error
        with psycopg.connect(fresh.db_url) as conn:
            state = conn.execute(
                "SELECT state FROM immich_search.job WHERE asset_id = %s AND task = 'describe'", (photo,)
            ).fetchone()[0]
        assert state == "pending"  # retried later (with backoff), not given up
        asked = len(standin.requests)
        result = fresh.describe(standin, [photo], "missing", [admin_key])
        assert result.returncode == 0, result.stdout + result.stderr
        assert len(standin.requests) == asked  # written from our table
    assert fresh.description(photo) == stored
    assert fresh.record(photo) == (stored, True, fresh.admin_id, False, None)


@contextlib.contextmanager
def in_locked_folder(immich: Instance, asset_id: str, pin: str = "123456") -> Iterator[None]:
    """Move an admin photo into Immich's locked folder (a session with the PIN entered, as in Immich's app) and
    back; a PIN this sets up is removed again, the session logged out."""
    with httpx.Client(base_url=immich.url + "/api", timeout=30) as client:
        login = client.post("/auth/login", json={"email": "admin@example.com", "password": "immich-admin-pass"})
        login.raise_for_status()
        client.headers["Authorization"] = f"Bearer {login.json()['accessToken']}"
        had_pin = client.get("/auth/status").json().get("pinCode")
        if not had_pin:
            client.post("/auth/pin-code", json={"pinCode": pin}).raise_for_status()
        try:
            client.post("/auth/session/unlock", json={"pinCode": pin}).raise_for_status()
            client.put("/assets", json={"ids": [asset_id], "visibility": "locked"}).raise_for_status()
            try:
                yield
            finally:
                client.put("/assets", json={"ids": [asset_id], "visibility": "timeline"}).raise_for_status()
        finally:
            if not had_pin:
                client.request("DELETE", "/auth/pin-code", json={"pinCode": pin}).raise_for_status()
            client.post("/auth/logout")


def test_a_photo_in_the_locked_folder_is_left_alone(fresh: Instance):
    photo = fresh.ids[ADMIN_PHOTOS[1]]
    with VisionStandIn("ollama") as standin, in_locked_folder(fresh, photo):
        result = fresh.describe(standin, [photo], "all", [fresh.keys[fresh.admin_id]])
        assert result.returncode == 0, result.stdout + result.stderr
        assert "1 in the locked folder left alone" in " ".join(result.stdout.split())
        assert fresh.ours(photo)  # described and stored (searchable with --include-locked)
        with psycopg.connect(fresh.db_url) as conn:
            outcome = conn.execute(
                "SELECT last_outcome, written_text FROM immich_search.immich_description WHERE asset_id = %s", (photo,)
            ).fetchone()
        assert outcome == ("locked", None)
    assert fresh.description(photo) == ""
