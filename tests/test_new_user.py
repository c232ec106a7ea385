"""What a new user hits first (issue 13): each rough edge with its remedy, on a real PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from immich_search import immich_rows
from immich_search.cli import cli
from immich_search.commands.sync import EXIT_JOBS_WAITING
from immich_search.db import open_pool
from immich_search.demo import IMMICH_MEDIA_LOCATION, import_library
from immich_search.ocr_engine import OcrLine
from immich_search.ranking.query_language import MAX_QUERY_CHARS, capped, parse
from immich_search.sqlfiles import query
from immich_search.sync.pipeline import ocr_row
from immich_search.sync.sources import MediaFileSource
from tests.sync_fakes import FakeEngine
from tests.test_sync import assets_by_name, plain_photo
from tests.test_sync_operations import make_pipeline

REPO = Path(__file__).resolve().parents[1]
FDFA = "\ufdfa"  # ARABIC LIGATURE SALLALLAHOU ALAYHE WASALLAM: NFKC makes it 18 characters, four words


def no_traceback(result) -> None:
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception


# ---------------------------------------------------------------------------------------------------------
# --database-url that is not a URL


@pytest.mark.parametrize("command", [["search", "x"], ["status"], ["migrate"], ["doctor"]])
def test_database_url_that_is_not_a_url_is_one_clear_line(command):
    result = CliRunner().invoke(cli, ["--database-url", "notaurl", *command])
    assert result.exit_code == 1
    no_traceback(result)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: --database-url is not a PostgreSQL URL"), result.output
    assert "postgresql://USER:PASSWORD@HOST:5432/DATABASE" in lines[0]


def test_db_url_from_immichs_env_that_is_not_a_url():
    result = CliRunner().invoke(cli, ["status"], env={"DB_URL": "notaurl", "IMMICH_SEARCH_DATABASE_URL": None})
    assert result.exit_code == 1 and "DB_URL is not a PostgreSQL URL" in result.output, result.output
    no_traceback(result)


# ---------------------------------------------------------------------------------------------------------
# a query that starts with "-"


@pytest.fixture
def one_user_library(db):
    """One user with two OCR'd photos: 发票 on one, 收据 on both."""
    with psycopg.connect(db) as conn:
        user = immich_rows.upsert_user(conn, "new@example.com")
        for i, text in enumerate(["增值税发票 收据", "收据 超市"]):
            asset = immich_rows.insert_asset(conn, user, f"/data/{i}.jpg", f"{i}.jpg", bytes([i]) * 20)
            line = OcrLine(text, 0.9, (0.1, 0.1, 0.9, 0.1, 0.9, 0.2, 0.1, 0.2))
            conn.execute(query("upsert_ocr"), ocr_row(str(asset), [line], "rapidocr 1.4.4 (PP-OCRv4)"))
    return db, str(user)


def test_query_starting_with_minus_is_a_query_not_an_option(one_user_library):
    db, _ = one_user_library
    runner = CliRunner()
    for args in (["search", "-发票", "--json"], ["search", "--json", "-发票"], ["search", "--json", "--", "-发票"]):
        result = runner.invoke(
            cli, ["--database-url", db, *args, "--no-clip"] if "--" not in args else ["--database-url", db, *args]
        )
        assert result.exit_code == 0, (args, result.output)
        assert json.loads(result.stdout) == [], "a query of only an exclusion matches nothing"
    result = runner.invoke(cli, ["--database-url", db, "search", "ocr:-发票 收据", "--json", "--limit", "5"])
    assert result.exit_code == 0, result.output
    assert [hit["original_file_name"] for hit in json.loads(result.stdout)] == ["1.jpg"]
    # A real option typo is still an error, not a query.
    result = runner.invoke(cli, ["--database-url", db, "search", "收据", "--limt", "5"])
    assert result.exit_code == 2 and "--limt" in result.output


# ---------------------------------------------------------------------------------------------------------
# a huge query of characters NFKC expands


def test_capped_is_the_twin_of_capped_query_v1(conn):
    samples = ["", "ocr:发票", FDFA * 3000, "a" * 5000, "Ａ" * 300, "e\u0301" * 200, FDFA * 14 + "x"]
    for text in samples:
        ours, _ = capped(text)
        (theirs,) = conn.execute("SELECT immich_search.capped_query_v1(%s)", (text,)).fetchone()
        assert ours == theirs
    assert capped(FDFA * 3000) == (capped(FDFA * 3000)[0], True) and len(capped(FDFA * 3000)[0]) == MAX_QUERY_CHARS
    assert capped("ocr:发票") == ("ocr:发票", False)
    assert parse(FDFA * 3000).truncated and not parse("发票").truncated


def test_huge_expanding_query_is_capped_in_the_cli(one_user_library):
    db, _ = one_user_library
    runner = CliRunner()
    for tokenizer in ("python", "sql"):
        result = runner.invoke(
            cli, ["--database-url", db, "search", FDFA * 3000, "--no-clip", "--json", "--tokenizer", tokenizer]
        )
        assert result.exit_code == 0, result.output
        no_traceback(result)
        assert f"longer than {MAX_QUERY_CHARS} characters" in result.output


def test_huge_expanding_query_is_capped_in_psql(one_user_library):
    db, user = one_user_library
    with psycopg.connect(db) as conn:
        # A bound, not a timing assertion: before the cap this ran for about a minute and then failed.
        conn.execute("SET statement_timeout = '20s'")
        assert conn.execute("SELECT * FROM immich_search.search_ocr(%s, %s)", (FDFA * 3000, user)).fetchall() == []
        rows = conn.execute("SELECT * FROM immich_search.search(%s, NULL, %s)", (FDFA * 3000, user)).fetchall()
        assert rows == []
        assert conn.execute("SELECT immich_search.ocr_tsquery(%s) IS NOT NULL", (FDFA * 3000,)).fetchone()[0]


# ---------------------------------------------------------------------------------------------------------
# a one-pass sync that leaves jobs for later; status's estimate


def test_one_pass_sync_says_what_waits_and_exits_75(db, tmp_path):
    photos = [plain_photo(tmp_path / "photos", f"p{i}.jpg", (i * 40, 30, 60)) for i in range(3)]
    import_library(db, photos, tmp_path / "media")
    ids = assets_by_name(db)
    with open_pool(db) as pool:
        make_pipeline(pool, tmp_path / "media", FakeEngine()).run_once()
    with psycopg.connect(db) as conn:
        # A worker killed while holding p0 (its lease runs 10 more minutes) and p1 waiting out a retry backoff.
        conn.execute(
            "UPDATE immich_search.job SET state = 'running', lease_owner = 'dead:1:x', "
            "lease_expires_at = now() + interval '10 minutes' WHERE asset_id = %s",
            (ids["p0.jpg"],),
        )
        conn.execute(
            "UPDATE immich_search.job SET state = 'pending', run_after = now() + interval '1 hour', attempts = 1, "
            "last_error = 'preview file not found' WHERE asset_id = %s",
            (ids["p1.jpg"],),
        )
    runner = CliRunner()
    args = ["--database-url", db, "sync", "--media-root", str(tmp_path / "media"), "--no-clip"]
    args += ["--ocr-source", "immich"]  # no OCR model is needed: nothing is runnable anyway
    result = runner.invoke(cli, args)
    assert result.exit_code == EXIT_JOBS_WAITING == 75, result.output
    assert "not finished: 1 ocr job(s) in retry backoff (the first is due in" in result.output
    assert "1 ocr job(s) leased by a worker (the first lease expires in 10 min)" in result.output

    status = runner.invoke(cli, ["--database-url", db, "status"], env={"COLUMNS": "250"})
    assert status.exit_code == 0, status.output
    assert "backlog clears in about 0 s" not in status.output
    assert "nothing is runnable now" in status.output
    assert "waiting: " in status.output and "leased by a worker" in status.output
    data = json.loads(runner.invoke(cli, ["--database-url", db, "status", "--json"]).output)
    assert data["eta_s"] is None
    assert {(item["reason"], item["jobs"]) for item in data["later"]} == {("leased", 1), ("backoff", 1)}

    # Nothing waiting: exit 0.
    with psycopg.connect(db) as conn:
        conn.execute("UPDATE immich_search.job SET state = 'done', lease_owner = NULL, lease_expires_at = NULL")
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output and "not finished" not in result.output


# ---------------------------------------------------------------------------------------------------------
# a media root that is not Immich's


def test_media_root_without_thumbs_warns(tmp_path):
    (tmp_path / "library" / "thumbs").mkdir(parents=True)
    assert MediaFileSource(tmp_path / "library", IMMICH_MEDIA_LOCATION).layout_warning() is None
    warning = MediaFileSource(tmp_path, IMMICH_MEDIA_LOCATION).layout_warning()
    assert "has no thumbs/ folder" in warning and f"--media-root {tmp_path / 'library'}" in warning


def test_sync_warns_before_queueing_when_the_media_root_has_no_thumbs(db, tmp_path):
    result = CliRunner().invoke(
        cli, ["--database-url", db, "sync", "--media-root", str(tmp_path), "--no-clip", "--ocr-source", "immich"]
    )
    assert result.exit_code == 0, result.output
    assert "has no thumbs/ folder" in result.output
    assert result.output.index("has no thumbs/ folder") < result.output.index("queued")


# ---------------------------------------------------------------------------------------------------------
# the embedded PostgreSQL outlives a killed client


def _embedded_client(data_dir: Path, then: str) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys, time
        from immich_search.embedded import start_embedded
        start_embedded({str(data_dir)!r})
        print("up", flush=True)
        {then}
    """)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def _postmaster_alive(data_dir: Path) -> bool:
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
    except (ProcessLookupError, ValueError):
        return False
    return True


def test_embedded_server_of_a_killed_client_stops_after_the_next_client(tmp_path):
    pytest.importorskip("pgserver")
    data_dir = tmp_path / "pg"
    killed = _embedded_client(data_dir, "time.sleep(600)")
    try:
        assert killed.stdout.readline().strip() == "up"
        assert _postmaster_alive(data_dir)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
    assert _postmaster_alive(data_dir), "nobody stopped it: SIGKILL runs no exit handler"
    following = _embedded_client(data_dir, "")
    assert following.stdout.readline().strip() == "up"
    assert following.wait(120) == 0
    deadline = time.monotonic() + 30
    while _postmaster_alive(data_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _postmaster_alive(data_dir), "the last live client's exit stops the server"


def test_sigterm_stops_the_embedded_server_of_the_last_client(tmp_path):
    pytest.importorskip("pgserver")
    data_dir = tmp_path / "pg"
    client = _embedded_client(data_dir, "time.sleep(600)")
    assert client.stdout.readline().strip() == "up"
    client.send_signal(signal.SIGTERM)
    assert client.wait(60) == 128 + signal.SIGTERM
    assert not _postmaster_alive(data_dir)


# ---------------------------------------------------------------------------------------------------------
# packaging metadata


def test_pyproject_metadata_gives_setuptools_nothing_to_warn_about():
    from setuptools.config.pyprojecttoml import read_configuration

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = read_configuration(REPO / "pyproject.toml")
    assert [str(w.message) for w in caught] == []
    assert config["project"]["license"] == "AGPL-3.0-or-later"


def test_every_folder_shipped_in_the_wheel_is_a_listed_package():
    """setuptools warns about each importable folder (e.g. sql/schema) that is not a listed package."""
    from setuptools.config.pyprojecttoml import read_configuration

    tool = read_configuration(REPO / "pyproject.toml")["tool"]["setuptools"]
    packages, package_dir = set(tool["packages"]), tool["package-dir"]
    for package, folder in package_dir.items():
        for path in (REPO / folder).rglob("*"):
            if path.is_dir() and "__pycache__" not in path.parts and any(path.glob("*.py")) | any(path.glob("*.sql")):
                name = ".".join([package, *path.relative_to(REPO / folder).parts])
                if name.split(".")[-1].isidentifier() and not any(
                    name == other or name.startswith(other + ".")
                    for other in package_dir
                    if other != package and package_dir[other].startswith(folder + "/")
                ):
                    assert name in packages, f"{path} is shipped as {name}, which pyproject.toml does not list"
