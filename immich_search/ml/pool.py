"""Running model calls off the event loop: a bounded number at once per model, each with a deadline.

Every model (CLIP image, CLIP text, OCR) gets its own :class:`ModelSlot`: a semaphore that admits at
most ``concurrency`` calls and a thread pool of the same size that runs them. A call that cannot start
or finish within the request timeout is answered 503 (Immich then tries its next URL), but the thread
keeps its slot until the model returns: the bound is real, a slow model never gets more threads than
it was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from immich_search.ml.errors import RequestError

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 120.0
"""Seconds a request may wait for and run on a model (a 1440 px preview takes ~2 s of OCR on one core)."""


class ModelSlot:
    """At most ``concurrency`` concurrent calls of one model, run in threads.

    Args:
        name: the model's name, for messages (``clip-visual``, ``ocr`` ...).
        concurrency: calls allowed at once (>= 1); for an NPU session, its core count.

    Attributes:
        busy: calls running now; peak: the most that ever ran at once; calls: calls finished.
    """

    def __init__(self, name: str, concurrency: int) -> None:
        self.name = name
        self.concurrency = max(1, int(concurrency))
        self._semaphore: asyncio.Semaphore | None = None  # made on first use, inside the serving loop
        self._executor = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix=f"ml-{name}")
        self._lock = threading.Lock()
        self.busy = 0
        self.peak = 0
        self.calls = 0

    def _call(
        self, function: Callable[..., T], args: tuple[Any, ...], loop: asyncio.AbstractEventLoop, semaphore: Any
    ) -> T:
        """Run ``function(*args)`` in a worker thread holding one slot (released when it returns)."""
        with self._lock:
            self.busy += 1
            self.peak = max(self.peak, self.busy)
        try:
            return function(*args)
        finally:
            with self._lock:
                self.busy -= 1
                self.calls += 1
            with contextlib.suppress(RuntimeError):  # the loop closed while the model ran
                loop.call_soon_threadsafe(semaphore.release)

    async def run(self, function: Callable[..., T], *args: Any, timeout: float = DEFAULT_TIMEOUT_S) -> T:
        """Run ``function(*args)`` in this model's threads; wait at most ``timeout`` seconds in all.

        Raises:
            RequestError: 503 when no slot frees up or the call does not finish in time.
            Exception: whatever ``function`` raises.
        """
        deadline = time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        semaphore = self._semaphore
        try:
            await asyncio.wait_for(semaphore.acquire(), timeout)
        except asyncio.TimeoutError as error:
            raise RequestError(503, f"{self.name}: all {self.concurrency} slot(s) busy for {timeout:g} s") from error
        try:
            future = loop.run_in_executor(self._executor, self._call, function, args, loop, semaphore)
        except BaseException:
            semaphore.release()
            raise
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError as error:
            raise RequestError(503, f"{self.name}: no answer within {timeout:g} s") from error

    def close(self) -> None:
        """Stop the worker threads once their calls return."""
        self._executor.shutdown(wait=False, cancel_futures=True)


class ModelPool:
    """The :class:`ModelSlot` of every model the service runs, by name."""

    def __init__(self, concurrency: dict[str, int]) -> None:
        self.slots = {name: ModelSlot(name, count) for name, count in concurrency.items()}

    def slot(self, name: str) -> ModelSlot:
        """Return the slot for ``name`` (KeyError for a model that was not configured)."""
        return self.slots[name]

    def close(self) -> None:
        """Close every slot."""
        for slot in self.slots.values():
            slot.close()
