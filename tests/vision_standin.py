"""A stand-in vision LLM server (Ollama ``/api/chat`` and OpenAI-compatible ``/v1/chat/completions``).

It checks every request against the documented shape (a wrong shape gets HTTP 400 and is recorded in
``bad``), decodes the image, and answers a description that is a function of the pixels (mean colour and
size), so tests can tell which image a row came from. ``mode`` steers it: ``ok``, ``fail`` (HTTP 500),
``busy`` (HTTP 429), ``hang`` (sleeps ``hang_s`` before answering), ``garbage`` (not JSON), ``malformed``
(JSON without the text), ``empty`` (an empty description); ``fail_times`` makes only the next N requests
fail (then ``ok``); ``suffix`` is appended to every description (a later run's text then differs). It counts
requests and the most in flight at once.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image, ImageStat


def image_words(jpeg: bytes) -> str:
    """The stand-in's description of an image: its size and mean colour, plus fixed Chinese words."""
    image = Image.open(io.BytesIO(jpeg))
    image.load()
    r, g, b = (round(v) for v in ImageStat.Stat(image.convert("RGB")).mean)
    return f"孩子在海边放风筝. A photo {image.width}x{image.height} colour {r:02x}{g:02x}{b:02x}."


class VisionStandIn:
    """One stand-in server on 127.0.0.1 (a random port); use as a context manager.

    Args:
        backend: ``ollama`` | ``openai``.
        api_key: the Bearer key required (``openai``), or ``None`` for none.
        delay_s: seconds each answer takes (to measure concurrency).
    """

    def __init__(self, backend: str, api_key: str | None = None, delay_s: float = 0.0) -> None:
        self.backend = backend
        self.api_key = api_key
        self.delay_s = delay_s
        self.mode = "ok"
        self.fail_times: int | None = None
        self.hang_s = 5.0
        self.suffix = ""
        self.requests: list[dict] = []
        self.bad: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                standin._handle(self)

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # socketserver's 5 refuses bursts of concurrent connections

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> VisionStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop answering (the port then refuses connections)."""
        self.server.shutdown()
        self.server.server_close()

    @property
    def path(self) -> str:
        return "/api/chat" if self.backend == "ollama" else "/v1/chat/completions"

    def _check(self, handler: BaseHTTPRequestHandler, body: dict) -> bytes:
        """Return the JPEG of a well-formed request; raise ValueError naming what is wrong."""
        if handler.path != self.path:
            raise ValueError(f"path {handler.path}")
        if handler.headers.get("Content-Type") != "application/json":
            raise ValueError(f"content type {handler.headers.get('Content-Type')}")
        if self.api_key is not None and handler.headers.get("Authorization") != f"Bearer {self.api_key}":
            raise ValueError(f"authorization {handler.headers.get('Authorization')}")
        if set(body) != {"model", "stream", "messages"} or body["stream"] is not False:
            raise ValueError(f"keys {sorted(body)}")
        (message,) = body["messages"]
        if self.backend == "ollama":
            if set(message) != {"role", "content", "images"} or message["role"] != "user":
                raise ValueError(f"message {sorted(message)}")
            if not isinstance(message["content"], str) or len(message["images"]) != 1:
                raise ValueError("content or images")
            return base64.b64decode(message["images"][0], validate=True)
        text, image = message["content"]
        if text["type"] != "text" or not text["text"] or image["type"] != "image_url":
            raise ValueError("content parts")
        prefix = "data:image/jpeg;base64,"
        if not image["image_url"]["url"].startswith(prefix):
            raise ValueError("image url")
        return base64.b64decode(image["image_url"]["url"][len(prefix) :], validate=True)

    def _answer(self, text: str) -> dict:
        if self.backend == "ollama":
            return {"model": "stand-in", "message": {"role": "assistant", "content": text}, "done": True}
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            mode = self.mode
            if self.fail_times is not None:
                mode = "fail" if self.fail_times > 0 else "ok"
                self.fail_times -= 1
        try:
            length = int(handler.headers.get("Content-Length", "0"))
            raw = handler.rfile.read(length)
            body = json.loads(raw)
            self.requests.append({"path": handler.path, "headers": dict(handler.headers), "body": body})
            try:
                jpeg = self._check(handler, body)
                text = image_words(jpeg) + self.suffix
            except (ValueError, KeyError, TypeError, OSError) as exc:
                self.bad.append(str(exc))
                self._send(handler, 400, b'{"error": "bad request"}')
                return
            if self.delay_s:
                time.sleep(self.delay_s)
            if mode == "hang":
                time.sleep(self.hang_s)
            if mode == "fail":
                self._send(handler, 500, b'{"error": "model crashed"}')
            elif mode == "busy":
                self._send(handler, 429, b'{"error": "too many requests"}')
            elif mode == "garbage":
                self._send(handler, 200, b"<html>not json")
            elif mode == "malformed":
                self._send(handler, 200, b'{"unexpected": true}')
            else:
                answer = self._answer("   " if mode == "empty" else text)
                self._send(handler, 200, json.dumps(answer, ensure_ascii=False).encode())
        finally:
            with self._lock:
                self.in_flight -= 1

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:  # the client gave up (a timeout): nothing to answer
            pass
