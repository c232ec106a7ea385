"""`immich-search demo` end to end on a fresh empty database of each server, with real RapidOCR."""

from __future__ import annotations

import io
import re

import psycopg
import pytest
from click.testing import CliRunner
from rich.console import Console
from rich.progress import Progress

from immich_search.cli import cli
from immich_search.demo import CJK_FONT_CANDIDATES, GENERATED_PHOTOS, run_demo
from tests.conftest import scratch_database
from tests.test_sync import font_path


@pytest.fixture
def empty_db(server):
    """A fresh database with nothing in it: the demo creates Immich's tables itself."""
    with scratch_database(server) as url:
        yield url


def demo(url: str, workdir) -> str:
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False, color_system=None)
    run_demo(url, images=None, workdir=workdir, console=console, progress=Progress(console=console, disable=True))
    return out.getvalue()


def counts(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT (SELECT count(*) FROM public.asset), (SELECT count(*) FROM immich_search.ocr),"
            " (SELECT count(*) FROM immich_search.job WHERE state = 'done')"
        ).fetchone()


def results_after(output: str, query: str) -> str:
    """The printed results of one example query (up to the next query or the end)."""
    start = output.index(f"immich-search search {query!r}")
    following = output.find("immich-search search ", start + 1)
    return output[start : following if following > 0 else len(output)]


def test_demo_indexes_generated_photos_and_is_idempotent(empty_db, tmp_path):
    workdir = tmp_path / "work"
    has_cjk = font_path(CJK_FONT_CANDIDATES) is not None
    expected = 1 + sum(1 for *_, needs_cjk in GENERATED_PHOTOS if has_cjk or not needs_cjk)  # + no_text.jpg

    output = demo(empty_db, workdir)
    assert f"{expected} photos under" in output
    assert re.search(rf"indexed {expected}, failed 0\b", output), output
    assert counts(empty_db) == (expected, expected, expected)
    assert (workdir / "media" / "thumbs").is_dir()

    summe = results_after(output, "ocr:summe")
    assert "receipt_de.jpg" in summe and "no matches" not in summe
    boarding = results_after(output, 'ocr:"boarding pass"')
    assert "boarding_pass.jpg" in boarding
    if has_cjk:
        invoice = results_after(output, "ocr:发票")
        assert "invoice_2024.jpg" in invoice
        menu = results_after(output, "ocr:水饺")  # the photo says 水餃 (traditional)
        assert "noodle_menu.jpg" in menu
    else:
        assert "no CJK font found" in output
    assert "immich_search.search_ocr(" in output, "the psql hint is printed"
    with psycopg.connect(empty_db) as conn:
        workers = conn.execute("SELECT count(*) FROM immich_search.worker").fetchone()[0]
    assert workers == 0, "the demo's sync removes its worker row: `status` must not show it as a silent worker"

    # A second run imports nothing new and indexes nothing again.
    again = demo(empty_db, workdir)
    assert re.search(r"indexed 0, failed 0\b", again), again
    assert counts(empty_db) == (expected, expected, expected)

    # The same through the command line, on the same database.
    result = CliRunner().invoke(cli, ["--database-url", empty_db, "demo", "--workdir", str(workdir)])
    assert result.exit_code == 0, result.output
    assert "indexed 0, failed 0" in result.output
    assert counts(empty_db) == (expected, expected, expected)
