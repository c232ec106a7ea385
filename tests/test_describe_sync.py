"""The describe task in the sync queue on a real PostgreSQL, against stand-in vision servers."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from click.testing import CliRunner

from immich_search.cli import cli
from immich_search.db import open_pool
from immich_search.demo import IMMICH_MEDIA_LOCATION
from immich_search.sync.describe_task import DescribeTask
from immich_search.sync.pipeline import SyncPipeline
from immich_search.sync.sources import MediaFileSource
from immich_search.sync.tasks import OcrTask
from immich_search.sync.vision import VisionConfig
from immich_search.tokens import TOKENIZER_VERSION
from tests.sync_fakes import FakeEngine
from tests.test_sync import preview_file
from tests.test_sync_operations import library
from tests.vision_standin import VisionStandIn


class CountingSource(MediaFileSource):
    """Media files, counting reads per asset (each preview must be read once for every task)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reads: dict[str, int] = {}

    def read(self, request):
        self.reads[request.asset_id] = self.reads.get(request.asset_id, 0) + 1
        return super().read(request)


def vision(*hosts, **kwargs) -> VisionConfig:
    return VisionConfig(backend="ollama", hosts=tuple(hosts), model="stand-in-vl", retry_wait_s=0.01, **kwargs)


def pipeline(pool, media, config, engine=None) -> tuple[SyncPipeline, CountingSource]:
    source = CountingSource(media, IMMICH_MEDIA_LOCATION)
    tasks = [OcrTask(engine or FakeEngine()), DescribeTask(config)]
    return SyncPipeline(pool, source, tasks), source


def descriptions(db) -> dict[str, tuple]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT asset_id, text, model, host, search_vector::text, tokenizer_version, processed_at "
            "FROM immich_search.description"
        ).fetchall()
    return {str(row[0]): row[1:] for row in rows}


def jobs(db, task: str) -> dict[str, tuple]:
    with psycopg.connect(db) as conn:
        rows = conn.execute(
            "SELECT asset_id, state, attempts, last_error, run_after > now() FROM immich_search.job WHERE task = %s",
            (task,),
        ).fetchall()
    return {str(row[0]): row[1:] for row in rows}


def test_describe_runs_with_ocr_reading_each_preview_once(db, tmp_path):
    ids = library(db, tmp_path, 5)
    with VisionStandIn("ollama") as server, open_pool(db) as pool:
        sync, source = pipeline(pool, tmp_path / "media", vision(server.url))
        report = sync.run_once()
        assert (report.done, report.failed) == (10, 0)
        assert report.by_task == {"ocr": 5, "describe": 5}
        assert set(source.reads.values()) == {1}, "one read and decode per asset for both tasks"
        assert server.bad == [] and len(server.requests) == 5
        again = sync.run_once()
        assert (again.queued, again.done) == (0, 0)
    rows = descriptions(db)
    assert set(rows) == set(ids.values())
    for text, model, host, vector, version, processed_at in rows.values():
        assert text.startswith("孩子在海边放风筝") and model == "stand-in-vl" and host == server.url
        assert "'风筝'" in vector and "'海边'" in vector, "folded and tokenised like OCR text"
        assert version == TOKENIZER_VERSION and processed_at is not None
    assert all(state == "done" for state, *_ in jobs(db, "describe").values())


def test_corrupt_preview_fails_both_tasks_with_the_reason(db, tmp_path):
    ids = library(db, tmp_path, 2)
    broken = ids["p0.jpg"]
    preview_file(db, tmp_path / "media", broken).write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with VisionStandIn("ollama") as server, open_pool(db) as pool:
        report = pipeline(pool, tmp_path / "media", vision(server.url))[0].run_once()
        assert (report.done, report.failed) == (2, 2)
        assert len(server.requests) == 1, "the corrupt image is never sent"
    for task in ("ocr", "describe"):
        state, attempts, error, _ = jobs(db, task)[broken]
        assert state == "failed" and attempts == 1 and error
    assert set(descriptions(db)) == {ids["p1.jpg"]}


def test_bad_answer_fails_the_job_and_ocr_still_lands(db, tmp_path):
    ids = library(db, tmp_path, 1)
    with VisionStandIn("ollama") as server, open_pool(db) as pool:
        server.mode = "empty"
        report = pipeline(pool, tmp_path / "media", vision(server.url))[0].run_once()
    assert report.by_task == {"ocr": 1} and report.failed == 1
    state, _, error, _ = jobs(db, "describe")[ids["p0.jpg"]]
    assert state == "failed" and "empty description" in error


def test_all_hosts_down_jobs_wait_and_nothing_is_lost(db, tmp_path):
    ids = library(db, tmp_path, 3)
    down = VisionStandIn("ollama")
    url = down.url
    down.server.server_close()  # the port refuses connections
    with open_pool(db) as pool:
        sync, _ = pipeline(pool, tmp_path / "media", vision(url, set_aside_s=30))
        report = sync.run_once()
        assert report.by_task == {"ocr": 3} and report.failed == 0 and report.deferred == 3
        waiting = jobs(db, "describe")
        assert set(waiting) == set(ids.values())
        for state, attempts, error, later in waiting.values():
            assert (state, attempts, later) == ("pending", 0, True), "deferred, no attempt counted"
            assert "no vision host available" in error
        # status shows them waiting, with the reason.
        status = CliRunner().invoke(cli, ["--database-url", db, "status", "--json"])
        assert status.exit_code == 0, status.output
        data = json.loads(status.output)
        assert data["counts"]["describe"]["pending"] == 3 and data["counts"]["describe"]["done"] == 0
        assert data["counts"]["ocr"]["done"] == 3
        assert any("no vision host available" in e["last_error"] for e in data["recent_errors"])
        # A host comes back (here: the jobs are made due now, as the set-aside time would).
        with psycopg.connect(db) as conn:
            conn.execute("UPDATE immich_search.job SET run_after = now() WHERE task = 'describe'")
        with VisionStandIn("ollama") as server:
            later, _ = pipeline(pool, tmp_path / "media", vision(server.url))
            report = later.run_once()
        assert report.by_task == {"describe": 3}
    assert set(descriptions(db)) == set(ids.values())
    assert all(row[:2] == ("done", 1) for row in jobs(db, "describe").values())


def test_failover_stores_the_host_that_answered(db, tmp_path):
    ids = library(db, tmp_path, 2)
    with VisionStandIn("openai") as bad, VisionStandIn("openai") as good, open_pool(db) as pool:
        bad.mode = "fail"
        config = VisionConfig(backend="openai", hosts=(bad.url, good.url), model="m", retry_wait_s=0.01)
        report = pipeline(pool, tmp_path / "media", config)[0].run_once()
    assert report.by_task == {"ocr": 2, "describe": 2}
    assert {row[2] for row in descriptions(db).values()} == {good.url}
    assert set(descriptions(db)) == set(ids.values())


def test_cli_sync_and_reprocess_describe(db, tmp_path, monkeypatch):
    ids = library(db, tmp_path, 2)
    media = str(tmp_path / "media")
    runner = CliRunner()
    with VisionStandIn("ollama") as server:
        base = ["--database-url", db]
        vision_args = ["--describe-host", server.url, "--describe-model", "stand-in-vl", "--max-concurrent", "2"]
        result = runner.invoke(
            cli, [*base, "sync", "--media-root", media, "--no-clip", "--ocr-source", "rapidocr", *vision_args]
        )
        assert result.exit_code == 0, result.output
        assert "describe 2" in result.output
        assert set(descriptions(db)) == set(ids.values())
        before = len(server.requests)
        result = runner.invoke(
            cli, [*base, "reprocess", ids["p0.jpg"], "--describe", "--media-root", media, *vision_args]
        )
        assert result.exit_code == 0, result.output
        assert len(server.requests) == before + 1
        result = runner.invoke(cli, [*base, "reprocess", ids["p0.jpg"], "--describe", "--media-root", media])
        assert result.exit_code != 0 and "--describe-host" in result.output
        result = runner.invoke(
            cli, [*base, "sync", "--media-root", media, "--describe-host", "gpu:1", "--describe-model", "m"]
        )
        assert result.exit_code == 2 and "http(s) URL" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("tasks", [None, ["describe"]])
def test_requeue_knows_describe(db, tmp_path, tasks):
    ids = library(db, tmp_path, 1)
    with psycopg.connect(db) as conn:
        conn.execute("INSERT INTO immich_search.setting VALUES ('describe_model', 'm')")
        queued = conn.execute(
            "SELECT immich_search.requeue(%s::uuid[], %s::text[])", (list(ids.values()), tasks)
        ).fetchone()[0]
        names = {row[0] for row in conn.execute("SELECT task FROM immich_search.job")}
    assert "describe" in names and queued == (2 if tasks is None else 1)
    with psycopg.connect(db) as conn, pytest.raises(psycopg.errors.RaiseException, match="requeue_v2"):
        conn.execute("SELECT immich_search.requeue(%s::uuid[], ARRAY['caption'])", (list(ids.values()),))


def test_descriptions_are_searchable_with_snippets(db, tmp_path):
    from immich_search.ranking.hybrid_search import search, search_query
    from immich_search.ranking.query_language import Mode

    ids = library(db, tmp_path, 3)
    with psycopg.connect(db) as conn:
        (owner,) = conn.execute('SELECT DISTINCT "ownerId"::text FROM public.asset').fetchone()
    with VisionStandIn("ollama") as server, open_pool(db) as pool:
        pipeline(pool, tmp_path / "media", vision(server.url))[0].run_once()
        # Traditional characters find the simplified description: folded like OCR text.
        hits = search_query(pool, "desc:風箏", owner)
        assert {hit.asset_id for hit in hits} == set(ids.values())
        assert all(hit.snippet.startswith("description: 孩子在海边放风筝") and hit.score >= 0.5 for hit in hits)
        assert search_query(pool, "ocr:风筝", owner) == [], "ocr: reads OCR text only"
        # Plain queries read OCR text (the fake engine's "photo 64x48 colour ...") and descriptions together;
        # the snippet shows both parts when both match.
        both = search_query(pool, "colour", owner)
        assert {hit.asset_id for hit in both} == set(ids.values())
        assert all(hit.snippet.startswith("photo ") and " | description: " in hit.snippet for hit in both)
        assert {h.asset_id for h in search_query(pool, "风筝", owner)} == set(ids.values())
        hybrid = search(pool, "海边", owner, mode=Mode.HYBRID)
        assert {hit.asset_id for hit in hybrid} == set(ids.values())
        assert all(hit.ocr_rank is not None and hit.snippet.startswith("description: ") for hit in hybrid)
        assert search_query(pool, "desc:风筝", str(uuid.uuid4())) == [], "only the caller's photos"


def test_psql_search_reads_descriptions(db, tmp_path):
    """psql's ``immich_search.search`` (search_v4) ranks descriptions as the CLI does: ``desc:`` alone,
    ``ocr:`` never, plain queries together with the OCR text; ``--tokenizer sql`` and ``--mode desc`` reach it."""
    from immich_search.ranking.hybrid_search import search_query
    from immich_search.ranking.query_language import Mode

    ids = library(db, tmp_path, 3)
    with psycopg.connect(db) as conn:
        (owner,) = conn.execute('SELECT DISTINCT "ownerId"::text FROM public.asset').fetchone()
    with VisionStandIn("ollama") as server, open_pool(db) as pool:
        pipeline(pool, tmp_path / "media", vision(server.url))[0].run_once()

    def psql(text: str, user: str = owner) -> list[tuple]:
        with psycopg.connect(db) as conn:
            return conn.execute(
                "SELECT asset_id::text, snippet, ocr_rank, clip_rank FROM immich_search.search(%s, NULL, %s::uuid, 10)",
                (text, user),
            ).fetchall()

    desc = psql("desc:風箏")
    assert {row[0] for row in desc} == set(ids.values())
    assert all(snippet.startswith("description: 孩子在海边放风筝") for _, snippet, _, _ in desc)
    assert [row[2] for row in desc] == [1, 2, 3] and {row[3] for row in desc} == {None}
    assert psql(" DESC：风筝") == desc, "prefix read as Python reads it (case, NFKC colon, spaces)"
    assert psql("ocr:风筝") == [], "ocr: reads OCR text only"
    assert {row[0] for row in psql("风筝")} == set(ids.values()), "plain queries read descriptions"
    plain = psql("colour")
    assert plain and all(" | description: " in snippet for _, snippet, _, _ in plain)
    # The stand-in's description repeats the photo's words: desc: finds them there, never in the OCR text.
    assert all(snippet.startswith("description: ") and " | " not in snippet for _, snippet, _, _ in psql("desc:colour"))
    assert psql("desc:风筝", str(uuid.uuid4())) == [], "only the caller's photos"
    with open_pool(db) as pool:
        for text, mode in (("desc:风筝", None), ("风筝", Mode.DESC)):
            hits = search_query(pool, text, owner, tokenizer="sql", mode=mode)
            python = search_query(pool, "desc:风筝", owner)
            assert [h.asset_id for h in hits] == [h.asset_id for h in python]


@pytest.mark.parametrize(
    ("extra", "code", "says"),
    [
        (["--write-immich", "missing"], 2, "--write-immich missing writes the describe task's descriptions"),
        (["--describe-host", "http://127.0.0.1:9", "--describe-model", "m", "--write-immich", "all"], 1, "immich-url"),
        (
            ["--describe-host", "http://127.0.0.1:9", "--describe-model", "m", "--write-immich", "missing"]
            + ["--immich-url", "http://127.0.0.1:9"],
            1,
            "needs the owners' API keys",
        ),
        (["--write-immich", "some"], 2, "'some' is not one of 'none', 'missing', 'all'"),
    ],
)
@pytest.mark.parametrize("command", ["sync", "reprocess"])
def test_write_immich_without_what_it_needs_is_a_clear_error(tmp_path, extra, code, says, command):
    # Checked before the database is opened (this URL leads nowhere).
    args = ["--database-url", "postgresql://nobody@127.0.0.1:9/none", command]
    if command == "reprocess":
        args += [str(uuid.uuid4()), "--describe"]
    result = CliRunner().invoke(cli, [*args, "--media-root", str(tmp_path), *extra], env={"IMMICH_URL": None})
    output = " ".join(result.output.split())
    assert result.exit_code == code, result.output
    assert says in output and "Traceback" not in output


def test_cli_sync_keeps_descriptions_when_immich_is_unreachable(db, tmp_path):
    # The sync's own wiring of --write-immich (the writes themselves are tested against the real Immich in
    # tests/test_describe_write_real_immich.py): Immich away, so every write fails and is retried later.
    from tests.ml_fixtures import free_port

    ids = library(db, tmp_path, 2)
    immich = f"http://127.0.0.1:{free_port()}"
    with VisionStandIn("ollama") as server:
        args = ["--database-url", db, "sync", "--media-root", str(tmp_path / "media"), "--no-clip"]
        args += ["--ocr-source", "rapidocr", "--describe-host", server.url, "--describe-model", "stand-in-vl"]
        args += ["--write-immich", "missing", "--immich-url", immich, "--api-key", "k1,k2"]
        result = CliRunner().invoke(cli, args, env={"IMMICH_URL": None, "IMMICH_API_KEY": None})
    output = " ".join(result.output.split())
    assert result.exit_code == 75, result.output  # jobs wait to be retried
    assert f"describe: description stored; not written into Immich: cannot reach Immich at {immich}" in output
    assert (
        "into Immich (--write-immich missing): 0 description(s) written, 0 written by a person kept, 2 not written yet"
        in output
    )
    assert set(descriptions(db)) == set(ids.values())  # kept and searchable
    assert {state for state, *_ in jobs(db, "describe").values()} == {"pending"}
    assert {state for state, *_ in jobs(db, "ocr").values()} == {"done"}
    assert "k1" not in output
