"""Progress lines where no progress bar can be drawn: the throttle, the figures, and `sync` in a pipe."""

from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from immich_search.cli import cli
from immich_search.demo import import_library
from immich_search.progress_log import ProgressLog, format_duration
from tests.test_sync import plain_photo

NOON = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def progress_log(interval_s: float) -> tuple[ProgressLog, Clock, list[str]]:
    lines: list[str] = []
    clock = Clock()
    return ProgressLog("OCR + CLIP", interval_s, write=lines.append, clock=clock, now=lambda: NOON), clock, lines


def test_lines_are_throttled_and_carry_rate_and_eta():
    log, clock, lines = progress_log(60)
    log(0, 1000)
    clock.t += 30
    log(50, 1000)
    assert lines == [], "nothing before the first interval"
    clock.t += 30
    log(100, 1000)
    assert lines == [
        "2026-11-21T12:00:00+00:00 sync progress tasks=OCR+CLIP done=100 total=1000 percent=10.0 rate=1.67/s eta=9m00s"
    ]
    clock.t += 59
    log(190, 1000)
    assert len(lines) == 1, "at most one line per interval"
    clock.t += 1
    log(200, 1000)
    assert lines[-1].endswith("done=200 total=1000 percent=20.0 rate=1.67/s eta=8m00s")


def test_a_new_pass_restarts_the_rate():
    log, clock, lines = progress_log(10)
    log(0, 100)
    clock.t += 100
    log(100, 100)
    assert lines[-1].endswith("done=100 total=100 percent=100.0 rate=1.00/s"), "done: no eta"
    clock.t += 1000  # --watch waited, then a new pass starts from zero
    log(1, 50)
    clock.t += 10
    log(20, 50)
    assert lines[-1].endswith("done=20 total=50 percent=40.0 rate=2.00/s eta=15s")


def test_total_never_below_done_and_zero_interval_logs_every_call():
    log, clock, lines = progress_log(0)
    log(0, 0)
    assert lines == ["2026-11-21T12:00:00+00:00 sync progress tasks=OCR+CLIP done=0 total=0 rate=0.00/s"]
    clock.t += 2
    log(7, 3)
    assert lines[-1].endswith("done=7 total=7 percent=100.0 rate=3.50/s")


def test_bad_interval_is_refused():
    with pytest.raises(ValueError, match="interval_s"):
        ProgressLog("OCR", -1)


@pytest.mark.parametrize(
    ("seconds", "text"), [(-3, "0s"), (0, "0s"), (59.9, "59s"), (61, "1m01s"), (3600, "1h00m"), (40_980, "11h23m")]
)
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_sync_in_a_pipe_logs_progress_lines(db, tmp_path):
    photos = [plain_photo(tmp_path / "photos", f"{n}.jpg", (40 * n, 90, 160)) for n in range(3)]
    import_library(db, photos, tmp_path / "media")
    # CliRunner's output is not a terminal, as in docker logs: no bar, progress lines instead.
    media = str(tmp_path / "media")
    args = ["--database-url", db, "sync", "--no-clip", "--media-root", media, "--progress-interval", "0"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    progress = [line for line in result.stderr.splitlines() if " sync progress " in line]
    assert progress, result.stderr
    assert re.fullmatch(r"\S+ sync progress tasks=OCR done=3 total=3 percent=100\.0 rate=[\d.]+/s", progress[-1])
    assert "indexed 3 (ocr 3)" in result.stdout
