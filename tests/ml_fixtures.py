"""Shared pieces of the ``ml`` service tests: a tiny cn-clip, text images, a live upstream stand-in.

* :func:`tiny_clip_dir` writes a 512-d tiny cn-clip (ViT-B-16's real signature) where 红 aligns with a
  red photo and 蓝 with a blue one (:class:`tests.clip_fixtures.TinyClip`).
* :func:`text_image` draws black text on white with PIL's bundled font (no font files needed), so the
  real OCR engine has something to read.
* :class:`LiveServer` runs an ASGI app with uvicorn in a thread on a free port: the stock Immich ML
  stand-in for forwarding tests (stock Immich ML needs model downloads, which tests never do), and
  the ``ml`` app itself where a real socket matters.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from pathlib import Path

import uvicorn
from PIL import Image, ImageDraw, ImageFont

from tests.clip_fixtures import CN_CLIP_IDS, TinyClip

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def tiny_clip_dir(root: Path) -> TinyClip:
    """Write a 512-d ViT-B-16 tiny cn-clip under ``root`` (红 -> red, 蓝 -> blue); return its maker."""
    tiny = TinyClip(embed_dim=512)
    tiny.align(CN_CLIP_IDS["红"], RED)
    tiny.align(CN_CLIP_IDS["蓝"], BLUE)
    tiny.write_model_dir(root)
    return tiny


def solid_jpeg(rgb: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    """Return a solid-colour JPEG (quality 95) of ``size`` (width, height)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, rgb).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def text_image(text: str = "HELLO WORLD 2024", size: tuple[int, int] = (900, 220), font_size: int = 64) -> bytes:
    """Return a PNG with ``text`` in black on white, drawn with PIL's bundled scalable font."""
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.text((40, 60), text, fill=(0, 0, 0), font=ImageFont.load_default(size=font_size))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """Run an ASGI ``app`` with uvicorn on 127.0.0.1:<free port> in a thread (a context manager).

    Attributes:
        url: ``http://127.0.0.1:<port>``.
    """

    def __init__(self, app, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
