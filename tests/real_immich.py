"""The real Immich v3.1 server for the ``real_immich`` tests (``../shared/real-immich``).

The server is configured by the variables that ``../shared/real-immich/psql.sh --env`` prints
(``REAL_IMMICH_URL``, ``REAL_IMMICH_DB_URL``, ``REAL_IMMICH_MEDIA_LOCATION``, the seeded users' API keys
and ids). ``.ci/run`` starts and seeds the server and exports them; without them the tests skip, and
with ``IMMICH_SEARCH_REQUIRE_REAL_IMMICH=1`` (set by ``.ci/run``) a skip becomes a failure.

The tests drive the product as a user would: the ``immich-search`` command in a subprocess against
Immich's own database, and Immich's own HTTP API for everything Immich does (uploads, trash, the locked
folder, deletes, sign-in). They share one server, so each test leaves it as it found it: photos a test
uploads are deleted again, photos it trashes or locks are restored.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = Path(os.environ.get("REAL_IMMICH_SCRIPTS", REPO.parent / "shared" / "real-immich"))
REQUIRED = ("REAL_IMMICH_URL", "REAL_IMMICH_DB_URL", "REAL_IMMICH_MEDIA_LOCATION", "REAL_IMMICH_ADMIN_API_KEY")
SKIP_REASON = (
    "no real Immich configured: run ../shared/real-immich/start.sh --seed, then "
    '`set -a; eval "$(../shared/real-immich/psql.sh --env)"; set +a` before pytest (see README, Testing)'
)
# Passwords seed.sh gives the seeded users (../shared/real-immich/README.md, "What is where").
PASSWORDS = {"admin@example.com": "immich-admin-pass", "bob@example.com": "immich-bob-pass"}
LATIN_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
)


def required() -> bool:
    """True when a skipped real-Immich test must fail instead (CI sets IMMICH_SEARCH_REQUIRE_REAL_IMMICH=1)."""
    return os.environ.get("IMMICH_SEARCH_REQUIRE_REAL_IMMICH", "") not in ("", "0")


@dataclass
class RealImmich:
    """One running, seeded real Immich server and how to reach it."""

    url: str
    db_url: str
    media: str
    admin_key: str
    bob_key: str
    admin_id: str
    bob_id: str
    home: Path

    @classmethod
    def from_env(cls) -> RealImmich | None:
        """The server named by the REAL_IMMICH_* variables, or None when they are not set."""
        env = os.environ
        if not all(env.get(name) for name in REQUIRED):
            return None
        return cls(
            url=env["REAL_IMMICH_URL"].rstrip("/"),
            db_url=env["REAL_IMMICH_DB_URL"],
            media=env["REAL_IMMICH_MEDIA_LOCATION"],
            admin_key=env["REAL_IMMICH_ADMIN_API_KEY"],
            bob_key=env.get("REAL_IMMICH_BOB_API_KEY", ""),
            admin_id=env.get("REAL_IMMICH_ADMIN_ID", ""),
            bob_id=env.get("REAL_IMMICH_BOB_ID", ""),
            home=Path(env.get("REAL_IMMICH_DIR", Path.home() / ".cache" / "immich-search-real-immich")),
        )

    # --- Immich's API ---------------------------------------------------------------------------------

    def api(self, key: str | None = None, token: str | None = None, timeout: float = 30) -> httpx.Client:
        """An httpx client for ``{url}/api`` authenticated by an API key or a session token."""
        headers = {}
        if key:
            headers["x-api-key"] = key
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=f"{self.url}/api", headers=headers, timeout=timeout)

    def ping(self) -> bool:
        """True when Immich answers ``GET /api/server/ping``."""
        try:
            with self.api(timeout=5) as client:
                return client.get("/server/ping").json().get("res") == "pong"
        except (httpx.HTTPError, ValueError):
            return False

    def login(self, email: str, password: str | None = None) -> str:
        """A fresh session token (``POST /api/auth/login``); a seeded user's password is known."""
        with self.api() as client:
            response = client.post("/auth/login", json={"email": email, "password": password or PASSWORDS[email]})
            response.raise_for_status()
            return response.json()["accessToken"]

    def upload(self, key: str, image: bytes, filename: str) -> str:
        """Upload a photo through ``POST /api/assets`` and wait until Immich wrote its preview; return its id."""
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        with self.api(key) as client:
            response = client.post(
                "/assets",
                files={"assetData": (filename, image, "image/jpeg")},
                data={"filename": filename, "fileCreatedAt": now, "fileModifiedAt": now},
            )
            response.raise_for_status()
            body = response.json()
        assert body["status"] == "created", body
        self.wait_for_preview(body["id"])
        return body["id"]

    def wait_for_preview(self, asset_id: str, timeout: float = 120) -> None:
        """Wait until the asset's preview row and file exist (Immich makes them in a background job)."""

        def written() -> bool:
            with psycopg.connect(self.db_url) as conn:
                row = conn.execute(
                    'SELECT path FROM asset_file WHERE "assetId" = %s AND type = \'preview\' AND NOT "isEdited"',
                    (asset_id,),
                ).fetchone()
            return bool(row and Path(row[0]).is_file())

        wait_for(written, timeout, f"Immich to write a preview for {asset_id}")

    def delete(self, key: str, ids: list[str], force: bool = True) -> None:
        """``DELETE /api/assets``: to the trash, or for good with ``force`` (Immich removes rows in a job)."""
        with self.api(key) as client:
            client.request("DELETE", "/assets", json={"ids": ids, "force": force}).raise_for_status()

    def wait_until_gone(self, asset_id: str, timeout: float = 60) -> None:
        """Wait until Immich's delete job removed the asset's row."""

        def gone() -> bool:
            with psycopg.connect(self.db_url) as conn:
                return conn.execute("SELECT 1 FROM asset WHERE id = %s", (asset_id,)).fetchone() is None

        wait_for(gone, timeout, f"Immich to delete asset {asset_id}")

    def restore(self, key: str, ids: list[str]) -> None:
        """``POST /api/trash/restore/assets``: take photos out of the trash."""
        with self.api(key) as client:
            client.post("/trash/restore/assets", json={"ids": ids}).raise_for_status()

    def elevated_token(self, email: str, pin: str = "123456") -> str:
        """A session token with elevated permission (PIN entered), which moving to the locked folder needs."""
        token = self.login(email)
        with self.api(token=token) as client:
            status = client.get("/auth/status").json()
            if not status.get("pinCode"):
                client.post("/auth/pin-code", json={"pinCode": pin}).raise_for_status()
            client.post("/auth/session/unlock", json={"pinCode": pin}).raise_for_status()
        return token

    def set_visibility(self, token: str, ids: list[str], visibility: str) -> None:
        """``PUT /api/assets`` with ``visibility`` (``locked`` needs an elevated session token)."""
        with self.api(token=token) as client:
            client.put("/assets", json={"ids": ids, "visibility": visibility}).raise_for_status()

    # --- Immich's process -------------------------------------------------------------------------------

    def restart(self) -> str:
        """Restart Immich alone (``stop.sh --immich-only``, ``start.sh``); return what it logged meanwhile."""
        log = self.home / "logs" / "immich.log"
        offset = log.stat().st_size if log.exists() else 0
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "IMMICH_"))}
        subprocess.run(["bash", str(SCRIPTS / "stop.sh"), "--immich-only"], check=True, env=env, timeout=120)
        subprocess.run(["bash", str(SCRIPTS / "start.sh")], check=True, env=env, timeout=600, capture_output=True)
        # The api worker checks the schema a moment after the server answers its first ping.
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            with log.open("rb") as handle:
                handle.seek(offset)
                text = handle.read().decode("utf-8", "replace")
            if text.count("Checking for schema drift") >= 2 and text.count("schema drift") >= 4:
                break
            time.sleep(0.5)
        return text

    def public_schema(self) -> list[tuple]:
        """A description of Immich's own schema ``public``: tables, columns, indexes, constraints, functions."""
        with psycopg.connect(self.db_url) as conn:
            rows = conn.execute(
                """
                SELECT 'column', table_name || '.' || column_name,
                       concat_ws(' ', data_type, udt_name, is_nullable, column_default)
                  FROM information_schema.columns WHERE table_schema = 'public'
                UNION ALL
                SELECT 'index', indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'
                UNION ALL
                SELECT 'constraint', conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
                  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
                UNION ALL
                SELECT 'function', p.oid::regprocedure::text, md5(pg_get_functiondef(p.oid))
                  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace AND p.prokind IN ('f', 'p')
                UNION ALL
                SELECT 'trigger', tgrelid::regclass::text || '.' || tgname, pg_get_triggerdef(oid)
                  FROM pg_trigger WHERE NOT tgisinternal
                   AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)
                ORDER BY 1, 2
                """
            ).fetchall()
        return rows

    # --- the product ------------------------------------------------------------------------------------

    def cli(self, *args: str, check: bool = True, timeout: float = 900, **kwargs) -> subprocess.CompletedProcess:
        """Run ``immich-search --database-url DB ARGS`` as a user would; return the finished process."""
        result = subprocess.run(
            [*immich_search_command(), "--database-url", self.db_url, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=product_env(),
            **kwargs,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"immich-search {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def media_args(self) -> list[str]:
        """``sync``'s media options for this server: the paths Immich stores are this host's paths."""
        return ["--media-root", self.media, "--immich-media-location", self.media]

    def ocr_rows(self) -> dict[str, str]:
        """Our OCR text per asset id (``immich_search.ocr``)."""
        with psycopg.connect(self.db_url) as conn:
            return {str(a): t for a, t in conn.execute("SELECT asset_id, text FROM immich_search.ocr")}

    def asset_ids(self, owner_id: str) -> dict[str, str]:
        """Original file name -> asset id of a user's assets, including trashed ones."""
        with psycopg.connect(self.db_url) as conn:
            rows = conn.execute('SELECT "originalFileName", id FROM asset WHERE "ownerId" = %s', (owner_id,))
            return {name: str(asset_id) for name, asset_id in rows}


def immich_search_command() -> list[str]:
    """The installed ``immich-search`` entry point of this interpreter's environment."""
    script = Path(sys.executable).with_name("immich-search")
    return [str(script)] if script.exists() else [sys.executable, "-m", "immich_search.cli"]


def product_env() -> dict[str, str]:
    """This environment without Immich's own DB_*/IMMICH_* variables, so only explicit options count.

    Tables are drawn 200 columns wide, so no cell text is wrapped across lines.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DB_", "IMMICH_"))}
    env["COLUMNS"] = "200"
    return env


@contextlib.contextmanager
def background(*args: str, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    """Run ``immich-search ARGS`` in the background; interrupt it (as Ctrl-C does) when the block ends."""
    process = subprocess.Popen(
        [*immich_search_command(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or product_env(),
        # A job started in the background by a non-interactive shell (CI) inherits SIGINT ignored: give the
        # command Ctrl-C back, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def text_photo(*lines: str, seed: int | None = None) -> bytes:
    """A JPEG (1200x800) with ``lines`` in large black letters, unique per call (random speckles).

    Latin text only, so no CJK font is needed; DejaVu or Liberation where installed, else Pillow's own.
    """
    rng = random.Random(seed if seed is not None else uuid.uuid4().int)
    image = Image.new("RGB", (1200, 800), (250, 248, 240))
    draw = ImageDraw.Draw(image)
    font = None
    for path in LATIN_FONTS:
        if Path(path).is_file():
            font = ImageFont.truetype(path, 110)
            break
    font = font or ImageFont.load_default(size=110)
    for row, line in enumerate(lines):
        draw.text((80, 120 + row * 220), line, font=font, fill=(10, 10, 10))
    for _ in range(40):  # a different checksum every time: Immich refuses a duplicate upload
        x, y = rng.randrange(1200), rng.randrange(760, 800)
        draw.point((x, y), fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=92)
    return out.getvalue()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    """Poll ``predicate`` until it returns something truthy; return it, or fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def skip_or_fail(reason: str) -> None:
    """Skip (a laptop without the server) or, where the server is required (CI), fail with the reason."""
    if required():
        pytest.fail(f"real Immich required (IMMICH_SEARCH_REQUIRE_REAL_IMMICH=1) but {reason}")
    pytest.skip(reason)


INSTANCE_KEYS = ("dir", "port", "pg_port", "redis_port")
"""What names an instance of its own: its ``REAL_IMMICH_DIR`` and ports (API, PostgreSQL, Redis)."""


def own_instance(group: str, why: str, keys: tuple[str, ...] = INSTANCE_KEYS) -> dict[str, str]:
    """Return ``{key: value}`` of the real Immich instance a test may change, named by the variables
    ``IMMICH_SEARCH_TEST_REAL_IMMICH_<GROUP>_<KEY>`` (e.g. ``..._ML_PG_PORT``); skip naming the unset ones,
    then ``why`` (what the test does to it; never the shared instance).
    """
    names = {key: f"IMMICH_SEARCH_TEST_REAL_IMMICH_{group}_{key.upper()}" for key in keys}
    values = {key: os.environ.get(name, "") for key, name in names.items()}
    missing = [names[key] for key, value in values.items() if not value]
    if missing:
        pytest.skip(f"set {', '.join(missing)} to {why}")
    return values


def ensure_indexed(server: RealImmich) -> dict[str, str]:
    """Migrate and run one ``sync`` pass over Immich's previews (nothing to do when already indexed).

    Returns our OCR text per asset id.
    """
    server.cli("migrate")
    server.cli("sync", *server.media_args())
    return server.ocr_rows()


def search_ids(server: RealImmich, query: str, user: str, *extra: str) -> list[str]:
    """Asset ids of ``immich-search search QUERY --user USER --json``, best first."""
    result = server.cli("search", query, "--user", user, "--json", "--limit", "1000", *extra)
    return [hit["asset_id"] for hit in json.loads(result.stdout)]


def psql_search_ids(server: RealImmich, queries: list[str], user_id: str) -> set[str]:
    """Asset ids that psql's ``immich_search.search(query, NULL, user)`` returns for any of ``queries``."""
    found: set[str] = set()
    with psycopg.connect(server.db_url) as conn:
        for query in queries:
            rows = conn.execute("SELECT asset_id FROM immich_search.search(%s, NULL, %s, 1000)", (query, user_id))
            found |= {str(asset_id) for (asset_id,) in rows}
    return found


@contextlib.contextmanager
def serving(server: RealImmich) -> Iterator[str]:
    """``immich-search serve`` (the command, on a free port) in front of the real Immich; yield its base URL."""
    from tests.fake_immich import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/api/server/ping", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    args = ["--database-url", server.db_url, "serve", "--immich-url", server.url, "--port", str(port)]
    with background(*args) as process:
        wait_for(lambda: answers() or process.poll() is not None, 60, "serve to listen")
        assert process.poll() is None, process.stderr.read()
        yield url
