"""Progress as log lines, for where no progress bar can be drawn (``docker logs``, journald, a pipe).

On a terminal ``immich-search sync`` draws a progress bar. Elsewhere, and in ``--watch`` mode, a first
backfill of a large library would otherwise print nothing for hours; :class:`ProgressLog` prints one
line at most every ``interval_s`` seconds instead, in logfmt (``key=value``) so log tools can parse it::

    2026-11-21T02:40:00+00:00 sync progress tasks=OCR+CLIP done=1234 total=100000 percent=1.2 rate=2.41/s eta=11h23m
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone

DEFAULT_INTERVAL_S = 60.0
"""Seconds between two progress lines (``sync --progress-interval``)."""


def format_duration(seconds: float) -> str:
    """``seconds`` as ``45s``, ``12m05s`` or ``11h23m`` (rounded down; negative counts as 0)."""
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class ProgressLog:
    """A ``(done, total)`` progress callback that writes a logfmt line at most every ``interval_s`` seconds.

    Use it as the ``on_progress`` of :func:`immich_search.sync.workers.run_sync`. The rate is jobs finished
    per second since the pass began; a pass begins at the first call and again whenever ``done`` goes
    down (``--watch`` starts each pass from zero). The first line comes ``interval_s`` seconds into a pass,
    so a short pass logs nothing but its summary; ``interval_s = 0`` logs every call.

    Args:
        label: what is being indexed (``"OCR"``, ``"OCR + CLIP"``); spaces are dropped in the line.
        interval_s: seconds between lines (>= 0).
        write: where a line goes (default: standard error, flushed).
        clock: monotonic seconds (injectable for tests).
        now: wall-clock time for the line's timestamp (injectable for tests).

    Raises:
        ValueError: ``interval_s`` is negative.
    """

    def __init__(
        self,
        label: str,
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        write: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be >= 0, got {interval_s}")
        self.label = label.replace(" ", "")
        self.interval_s = interval_s
        self._write = write or _write_stderr
        self._clock = clock
        self._now = now
        self._started: float | None = None
        self._last_line: float | None = None
        self._last_done = 0

    def __call__(self, done: int, total: int) -> None:
        """Record that ``done`` of ``total`` jobs of this pass are finished; write a line when one is due."""
        moment = self._clock()
        if self._started is None or done < self._last_done:
            self._started = self._last_line = moment
        self._last_done = done
        if moment - self._last_line < self.interval_s:
            return
        self._last_line = moment
        self._write(self.line(done, total, moment - self._started))

    def line(self, done: int, total: int, elapsed_s: float) -> str:
        """The progress line for ``done`` of ``total`` jobs after ``elapsed_s`` seconds of this pass."""
        total = max(total, done)
        fields = [f"tasks={self.label}", f"done={done}", f"total={total}"]
        if total:
            fields.append(f"percent={100 * done / total:.1f}")
        rate = done / elapsed_s if elapsed_s > 0 else 0.0
        fields.append(f"rate={rate:.2f}/s")
        if rate > 0 and total > done:
            fields.append(f"eta={format_duration((total - done) / rate)}")
        stamp = self._now().isoformat(timespec="seconds")
        return f"{stamp} sync progress {' '.join(fields)}"


def _write_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
