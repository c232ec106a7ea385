"""Test doubles for the sync: fake OCR engines and a TCP proxy that can cut the database off.

The engines are plain classes with ``.model`` and ``.recognize(image) -> list[OcrLine]``; their text is
a function of the pixels, so two runs over the same preview bytes give the same rows. Worker processes
build them by import path (``WorkerSpec.ocr_engine = "tests.sync_fakes:FakeEngine"``); environment
variables steer the slow one.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import psycopg
from PIL import Image, ImageStat

from immich_search.ocr_engine import OcrLine


def pixel_text(image: Image.Image) -> str:
    """A deterministic 'recognised text' of an image: its size and mean colour."""
    r, g, b = (round(v) for v in ImageStat.Stat(image.convert("RGB")).mean)
    return f"photo {image.width}x{image.height} colour {r:02x}{g:02x}{b:02x}"


class FakeEngine:
    """Instant, deterministic OCR: one line, the image's size and mean colour. Counts calls and sizes."""

    model = "fake-ocr 1"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self.calls = 0
        self.sizes: list[tuple[int, int]] = []

    def recognize(self, image: Image.Image) -> list[OcrLine]:
        self.calls += 1
        self.sizes.append(image.size)
        return [OcrLine(text=pixel_text(image), score=0.99, box=(0.1, 0.1, 0.9, 0.1, 0.9, 0.2, 0.1, 0.2))]


class SlowEngine(FakeEngine):
    """A fake engine for worker processes, steered by the environment.

    * ``SYNC_TEST_DELAY_S``: seconds per image (default 0);
    * ``SYNC_TEST_MARKER``: a file written (with this pid) when the first image is being recognised;
    * ``SYNC_TEST_HANG``: when set, the first image never finishes (the process waits to be killed).

    The recognised text names the pid, so a test can tell which process wrote a row.
    """

    model = "slow-fake-ocr 1"

    def recognize(self, image: Image.Image) -> list[OcrLine]:
        marker = os.environ.get("SYNC_TEST_MARKER")
        if marker and self.calls == 0:
            Path(marker).write_text(str(os.getpid()))
        if os.environ.get("SYNC_TEST_HANG"):
            time.sleep(3600)
        time.sleep(float(os.environ.get("SYNC_TEST_DELAY_S", "0")))
        lines = super().recognize(image)
        return [OcrLine(text=f"{line.text} pid {os.getpid()}", score=line.score, box=line.box) for line in lines]


class ExplodingEngine:
    """An engine that must never be used (e.g. when all text comes from Immich)."""

    model = "never"

    def __init__(self, threads: int | None = None) -> None:
        raise AssertionError("the OCR engine was built although no image needed it")


class TcpProxy:
    """A TCP proxy in front of a PostgreSQL server (TCP or unix socket) that can cut every connection.

    While cut, new connections are accepted and closed at once (counted in :attr:`refused`), which a
    client sees as the server going away, like a database restart.
    """

    def __init__(self, url: str) -> None:
        info = psycopg.conninfo.conninfo_to_dict(url)
        host = info.get("host") or "/tmp"
        port = int(info.get("port") or 5432)
        self.upstream = ("unix", f"{host}/.s.PGSQL.{port}") if host.startswith("/") else ("tcp", (host, port))
        self.info = info
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.down = threading.Event()
        self.refused = 0
        self.accepted = 0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, dbname: str | None = None) -> str:
        """A libpq URL reaching the upstream server through this proxy."""
        info = {key: value for key, value in self.info.items() if key not in ("host", "port", "hostaddr")}
        info.update(host="127.0.0.1", port=str(self.port))
        if dbname:
            info["dbname"] = dbname
        return psycopg.conninfo.make_conninfo(**info)

    def _connect_upstream(self) -> socket.socket:
        kind, address = self.upstream
        upstream = socket.socket(socket.AF_UNIX if kind == "unix" else socket.AF_INET, socket.SOCK_STREAM)
        upstream.connect(address)
        return upstream

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down.is_set():
                self.refused += 1
                client.close()
                continue
            try:
                upstream = self._connect_upstream()
            except OSError:
                client.close()
                continue
            self.accepted += 1
            with self._lock:
                self._pairs.append((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Drop every connection and refuse new ones until :meth:`restore`."""
        self.down.set()
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for pair in pairs:
            for sock in pair:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                sock.close()

    def restore(self) -> None:
        """Let connections through again."""
        self.down.clear()

    def close(self) -> None:
        """Stop the proxy."""
        self._closed = True
        self.cut()
        self.listener.close()
