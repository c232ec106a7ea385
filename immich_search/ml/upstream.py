"""Forwarding what ``ml`` does not serve (faces, unknown tasks) to stock Immich ML services, with failover.

The request goes out unchanged (same multipart body and content type) to ``<url>/predict`` of each
configured URL in turn, as Immich's server does (``machine-learning.repository.ts``): URLs that
answered last time first, in the configured order, then the others; a 2xx answer is passed back
unchanged. Immich joins ``predict`` to the URL with ``new URL('predict', url)``, so a URL with a path
needs a trailing slash; :func:`predict_url` does the same.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import httpx

from immich_search.errors import ConfigError
from immich_search.ml.errors import RequestError

DEFAULT_UPSTREAM_TIMEOUT_S = 300.0
"""Seconds one upstream may take (a cold stock service downloads and loads its face model first)."""


def predict_url(base: str) -> str:
    """Return ``<base>/predict`` resolved as Immich's ``new URL('predict', base)`` resolves it."""
    return urljoin(base, "predict")


def check_upstream_urls(urls: Sequence[str]) -> list[str]:
    """Validate ``--upstream`` URLs (http or https, with a host) and return them.

    Raises:
        ConfigError: a URL is not an absolute http(s) URL.
    """
    checked = []
    for url in urls:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"--upstream {url!r} is not an http(s) URL such as http://immich-machine-learning:3003")
        checked.append(url)
    return checked


@dataclass(frozen=True)
class UpstreamAnswer:
    """An upstream's answer, passed back as it is: status, body bytes, content type."""

    status: int
    body: bytes
    content_type: str


class Upstream:
    """The configured upstream ML services and which of them answered last time.

    Args:
        urls: base URLs in order of preference (``http://immich-machine-learning:3003``).
        client: the HTTP client to use (closed by :meth:`aclose`).
    """

    def __init__(self, urls: Sequence[str], client: httpx.AsyncClient | None = None) -> None:
        self.urls = list(urls)
        self._healthy = {url: True for url in self.urls}
        self._lock = threading.Lock()
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(DEFAULT_UPSTREAM_TIMEOUT_S, connect=5.0))

    def order(self) -> list[str]:
        """Return the URLs to try: healthy ones first, each group in configured order."""
        with self._lock:
            return [url for url in self.urls if self._healthy[url]] + [
                url for url in self.urls if not self._healthy[url]
            ]

    def _mark(self, url: str, healthy: bool) -> None:
        with self._lock:
            self._healthy[url] = healthy

    async def predict(self, body: bytes, content_type: str) -> UpstreamAnswer:
        """POST ``body`` to each upstream's ``/predict`` until one answers 2xx.

        Returns:
            the first 2xx answer; when every URL failed and the last one answered 4xx (the request's
            fault), that answer.

        Raises:
            RequestError: 501 when no upstream is configured; 502 when every upstream failed (the
                message lists each URL's failure).
        """
        if not self.urls:
            raise RequestError(501, "this task is not served here and no --upstream Immich ML URL is configured")
        failures: list[str] = []
        last_client_error: UpstreamAnswer | None = None
        for url in self.order():
            try:
                response = await self._client.post(
                    predict_url(url), content=body, headers={"content-type": content_type}
                )
            except httpx.HTTPError as error:
                self._mark(url, False)
                failures.append(f"{url}: {type(error).__name__}: {error}")
                continue
            answer = UpstreamAnswer(
                response.status_code, response.content, response.headers.get("content-type", "application/json")
            )
            if response.is_success:
                self._mark(url, True)
                return answer
            self._mark(url, False)
            failures.append(f"{url}: HTTP {response.status_code}")
            last_client_error = answer if 400 <= response.status_code < 500 else None
        if last_client_error is not None:
            return last_client_error
        raise RequestError(502, "every upstream ML URL failed: " + "; ".join(failures))

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
