"""API mode (``sync --source api``) against a fake Immich over real HTTP, on a real PostgreSQL."""

from __future__ import annotations

import psycopg
import pytest
from click.testing import CliRunner

from immich_search import immich_rows
from immich_search.cli import cli
from immich_search.db import open_pool
from immich_search.demo import IMMICH_MEDIA_LOCATION, import_library
from immich_search.errors import ConfigError
from immich_search.sync.api_source import ApiSource, normalise_base_url, split_api_keys
from immich_search.sync.errors import PermanentJobError, RetryableJobError
from immich_search.sync.pipeline import SyncPipeline
from immich_search.sync.sources import MediaFileSource, PreviewRequest
from immich_search.sync.tasks import OcrTask
from tests.fake_immich_sync import FakeImmichSync, serve
from tests.sync_fakes import FakeEngine
from tests.test_sync import assets_by_name, jobs_by_name, ocr_rows, plain_photo, preview_file, text_photo


def user_id(url: str, email: str) -> str:
    with psycopg.connect(url) as conn:
        return str(conn.execute('SELECT id FROM public."user" WHERE email = %s', (email,)).fetchone()[0])


@pytest.fixture
def two_users(db, tmp_path):
    """alice (2 photos), bob (1), carol (1, shares with alice in timeline), dave (1, shares with nobody)."""
    media = tmp_path / "media"
    photos = tmp_path / "photos"
    for email, names in (
        ("alice@example.com", ["a1.jpg", "a2.jpg"]),
        ("bob@example.com", ["b1.jpg"]),
        ("carol@example.com", ["c1.jpg"]),
        ("dave@example.com", ["d1.jpg"]),
    ):
        made = [plain_photo(photos, name, (len(name) * 20, ord(name[0]), ord(name[1]) * 2)) for name in names]
        import_library(db, made, media, email=email)
    with psycopg.connect(db) as conn:
        immich_rows.share_partner(conn, user_id(db, "carol@example.com"), user_id(db, "alice@example.com"))
    fake = FakeImmichSync(db, media)
    keys = {email: fake.add_key(user_id(db, email)) for email in ("alice@example.com", "bob@example.com")}
    return fake, keys, media


def api_pipeline(pool, source, engine=None) -> SyncPipeline:
    return SyncPipeline(pool, source, [OcrTask(engine or FakeEngine())])


def test_api_source_gives_the_same_results_as_files(db, two_users):
    fake, keys, media = two_users
    ids = assets_by_name(db)
    with serve(fake) as base, open_pool(db) as pool:
        source = ApiSource(base + "/api/", f"{keys['alice@example.com']}, {keys['bob@example.com']}", refresh_s=0)
        assert [user.email for user in source.check()] == ["alice@example.com", "bob@example.com"]
        report = api_pipeline(pool, source).run_once()
        by_api = ocr_rows(db)
        files = api_pipeline(pool, MediaFileSource(media, IMMICH_MEDIA_LOCATION)).run_once(force=True)
        by_files = ocr_rows(db)
    assert (report.done, report.failed) == (4, 1), report.errors
    assert files.done == 5
    assert {name: row["text"] for name, row in by_api.items()} == {
        name: row["text"] for name, row in by_files.items() if name != "d1.jpg"
    }, "the same preview bytes give the same rows"
    fetched = {(asset, key) for route, asset, key in fake.calls if route == "thumbnail"}
    assert (ids["a1.jpg"], keys["alice@example.com"]) in fetched, "an asset is fetched with its owner's key"
    assert (ids["b1.jpg"], keys["bob@example.com"]) in fetched
    assert (ids["c1.jpg"], keys["alice@example.com"]) in fetched, "a partner's asset through the key that lists it"
    assert any(route == "search_metadata" for route, _, _ in fake.calls), "assets were listed through the API"
    job = jobs_by_name(db)
    assert job["d1.jpg"]["state"] == "done", "the files pass did what no key could"


def test_asset_no_key_may_see_is_a_clear_permanent_failure(db, two_users):
    fake, keys, _ = two_users
    with serve(fake) as base, open_pool(db) as pool:
        source = ApiSource(base, keys["alice@example.com"] + "," + keys["bob@example.com"], refresh_s=0)
        api_pipeline(pool, source).run_once()
    job = jobs_by_name(db)["d1.jpg"]
    assert job["state"] == "failed" and job["attempts"] == 1
    assert "none of the 2 API keys may see this asset" in job["error"] and "IMMICH_API_KEY" in job["error"]
    assert "immich_search.requeue_failed()" in job["error"], "the remedy for a whole library at once"


def test_transient_errors_are_retried_and_missing_previews_wait(db, two_users):
    fake, keys, media = two_users
    ids = assets_by_name(db)
    fake.faults[("thumbnail", ids["a1.jpg"])] = [503, 502]  # Immich restarting: fine on the third try
    fake.faults[("thumbnail", ids["a2.jpg"])] = [503, 503, 503]  # longer than the retries: next pass
    preview_file(db, media, ids["b1.jpg"]).unlink()  # Immich has not written it yet: 404
    with serve(fake) as base, open_pool(db) as pool:
        source = ApiSource(base, [keys["alice@example.com"], keys["bob@example.com"]], backoff_s=0.01)
        api_pipeline(pool, source).run_once()
    jobs = jobs_by_name(db)
    assert jobs["a1.jpg"]["state"] == "done"
    assert jobs["a2.jpg"]["state"] == "pending" and jobs["a2.jpg"]["later"]
    assert "503" in jobs["a2.jpg"]["error"]
    assert jobs["b1.jpg"]["state"] == "pending" and jobs["b1.jpg"]["later"]
    assert "no preview for this asset yet (404)" in jobs["b1.jpg"]["error"]
    calls = [asset for route, asset, _ in fake.calls if route == "thumbnail"]
    assert calls.count(ids["a1.jpg"]) == 3 and calls.count(ids["a2.jpg"]) == 3


def test_api_source_errors():
    with pytest.raises(ConfigError, match="IMMICH_API_KEY"):
        ApiSource("http://immich:2283", " , ")
    with pytest.raises(ConfigError, match="http"):
        ApiSource("immich:2283", "key")
    assert normalise_base_url("http://immich:2283/api/") == "http://immich:2283"
    assert split_api_keys("a, b,,c ") == ("a", "b", "c")
    unreachable = ApiSource("http://127.0.0.1:1", "key", retries=1, timeout_s=2)
    with pytest.raises(ConfigError, match="cannot reach Immich"):
        unreachable.check()
    with pytest.raises(RetryableJobError, match="cannot reach Immich"):
        unreachable.read(PreviewRequest("00000000-0000-4000-8000-000000000000", "/data/x.jpeg", "u"))
    assert PermanentJobError("x").retryable is False


def test_bad_key_is_named_not_shown(db, two_users):
    fake, keys, _ = two_users
    with serve(fake) as base:
        source = ApiSource(base, [keys["alice@example.com"], "wrong-key"])
        with pytest.raises(ConfigError, match="refused API key #2") as raised:
            source.check()
    assert "wrong-key" not in str(raised.value)


def test_sync_command_with_api_source(db, tmp_path, monkeypatch):
    import_library(db, [text_photo(tmp_path / "photos", "sign.jpg", ["SLOW DOWN"])], tmp_path / "media")
    fake = FakeImmichSync(db, tmp_path / "media")
    key = fake.add_key(user_id(db, "demo@immich-search.local"))
    runner = CliRunner()
    with serve(fake) as base:
        monkeypatch.setenv("IMMICH_URL", base)
        monkeypatch.setenv("IMMICH_API_KEY", key)
        result = runner.invoke(cli, ["--database-url", db, "sync", "--source", "api", "--no-clip"])
        assert result.exit_code == 0, result.output
        assert "indexed 1" in result.output
        monkeypatch.setenv("IMMICH_API_KEY", "nope")
        refused = runner.invoke(cli, ["--database-url", db, "sync", "--source", "api", "--no-clip"])
    assert "SLOW" in ocr_rows(db)["sign.jpg"]["text"].upper()
    assert refused.exit_code == 1 and "refused API key #1" in refused.output and "nope" not in refused.output
    monkeypatch.delenv("IMMICH_URL")
    missing = runner.invoke(cli, ["--database-url", db, "sync", "--source", "api"])
    assert missing.exit_code == 1 and "IMMICH_URL" in missing.output
