"""Vision LLM hosts for the describe task: Ollama or OpenAI-compatible servers, with failover.

A :class:`VisionClient` holds a list of hosts of one backend. Each request goes to the first host that is
not set aside and has a free slot (at most ``max_concurrent`` requests in flight per host). What can succeed
later (a connection error, a timeout, HTTP 429 or 5xx) is retried on the same host with exponential backoff
(tenacity), a few times; a host that still fails is set aside for ``set_aside_s`` seconds and the next one
is tried. A malformed or empty answer is not retried: the model answered, and answers the same again.
When every host is set aside the request fails with :class:`HostsDownError`, which the sync turns into a
job that waits (no attempt counted) until a host is back.

Request shapes (the servers' documented APIs):

* Ollama ``POST {host}/api/chat``: ``{"model", "stream": false, "messages": [{"role": "user",
  "content": prompt, "images": [base64 JPEG]}]}``; the text is ``message.content``.
* OpenAI-compatible (llama.cpp ``llama-server``, vLLM, LM Studio) ``POST {host}/v1/chat/completions``:
  ``{"model", "stream": false, "messages": [{"role": "user", "content": [{"type": "text", "text": prompt},
  {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,..."}}]}]}`` with an optional
  ``Authorization: Bearer <key>``; the text is ``choices[0].message.content``.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx
import tenacity

from immich_search.errors import ConfigError
from immich_search.sync.errors import PermanentJobError, RetryableJobError

log = logging.getLogger(__name__)

BACKENDS = ("ollama", "openai")
"""Supported backends: ``ollama`` (``/api/chat``) and ``openai`` (``/v1/chat/completions``)."""

DEFAULT_PROMPT = (
    "Describe this photo factually in two or three sentences: what and who is in it, where, any visible "
    "text, and the kind of photo (a receipt, a screenshot, a landscape...). No guesses, no opinions. "
    "Answer in {language}."
)
"""The default prompt; ``{language}`` becomes the library's language (``--describe-language``)."""

DEFAULT_LANGUAGE = "Chinese"
"""The library's language by default: this add-on is for Chinese search (descriptions are folded like OCR
text, so traditional and simplified both match)."""

DEFAULT_TIMEOUT_S = 120.0
"""Seconds one request may take: a 4B model on a CPU describes a photo in tens of seconds."""

DEFAULT_SET_ASIDE_S = 60.0
"""Seconds a failing host is left alone before it is tried again."""

DEFAULT_MAX_CONCURRENT = 2
"""Requests in flight per host by default (a GPU server batches a few; a CPU one prefers one or two)."""

RETRIES_PER_HOST = 3
"""Attempts on one host (retryable failures only) before it is set aside."""


class HostsDownError(RetryableJobError):
    """Every host is set aside or failing: the job waits (``defer_s`` seconds), no attempt counted."""

    def __init__(self, message: str, defer_s: float) -> None:
        super().__init__(message)
        self.defer_s = defer_s


class _Transient(Exception):
    """A failure worth retrying: connection error, timeout, HTTP 429 or 5xx."""


@dataclass(frozen=True)
class VisionConfig:
    """How to reach the vision model (picklable: it travels to ``--workers`` processes).

    Attributes:
        backend: ``ollama`` | ``openai``.
        hosts: base URLs, tried in order (e.g. ``http://gpu1:11434``).
        model: the model name the server knows (e.g. ``qwen2.5vl:3b``).
        prompt: the instruction; ``{language}`` is replaced by ``language``.
        language: the library's language, named in the default prompt.
        timeout_s: seconds per request.
        max_concurrent: requests in flight per host.
        set_aside_s: seconds a failing host is left alone.
        api_key: ``Authorization: Bearer`` key (``openai`` only; not shown in reprs).
        retry_wait_s: first backoff between retries on one host, in seconds (doubles, at most 10x).
    """

    backend: str
    hosts: tuple[str, ...]
    model: str
    prompt: str = DEFAULT_PROMPT
    language: str = DEFAULT_LANGUAGE
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    set_aside_s: float = DEFAULT_SET_ASIDE_S
    api_key: str | None = field(default=None, repr=False)
    retry_wait_s: float = 1.0

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"vision backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if not self.hosts:
            raise ConfigError("the describe task needs at least one vision host (--describe-host)")
        for host in self.hosts:
            if not host.startswith(("http://", "https://")):
                raise ConfigError(f"vision host must be an http(s) URL, got {host!r}")
        if not self.model:
            raise ConfigError("the describe task needs a model name (--describe-model)")
        if self.max_concurrent < 1 or self.timeout_s <= 0 or self.set_aside_s < 0:
            raise ConfigError("--describe-max-concurrent >= 1, --describe-timeout > 0, --describe-set-aside >= 0")

    @property
    def text_prompt(self) -> str:
        """The prompt with the language filled in."""
        return self.prompt.replace("{language}", self.language)


@dataclass(frozen=True)
class Description:
    """One answer: ``text`` (stripped, non-empty), the ``host`` that gave it, ``seconds`` it took."""

    text: str
    host: str
    seconds: float


def request_body(config: VisionConfig, jpeg: bytes) -> tuple[str, dict]:
    """Return ``(path, JSON body)`` of a describe request for ``config.backend`` (see the module doc)."""
    data = base64.b64encode(jpeg).decode("ascii")
    if config.backend == "ollama":
        message = {"role": "user", "content": config.text_prompt, "images": [data]}
        return "/api/chat", {"model": config.model, "stream": False, "messages": [message]}
    content = [
        {"type": "text", "text": config.text_prompt},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}},
    ]
    return "/v1/chat/completions", {
        "model": config.model,
        "stream": False,
        "messages": [{"role": "user", "content": content}],
    }


def answer_text(backend: str, payload: object) -> str:
    """Extract the description from a server's JSON answer.

    Raises:
        PermanentJobError: the answer has no text where the API puts it, or the text is empty.
    """
    try:
        if backend == "ollama":
            text = payload["message"]["content"]  # type: ignore[index]
        else:
            text = payload["choices"][0]["message"]["content"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError) as exc:
        raise PermanentJobError(f"vision model gave a malformed answer: {str(payload)[:200]!r}") from exc
    if not isinstance(text, str) or not text.strip():
        raise PermanentJobError("vision model gave an empty description")
    return text.strip()


class _Host:
    """One server: its base URL, a slot semaphore (``max_concurrent``) and when it may be tried again."""

    def __init__(self, url: str, max_concurrent: int) -> None:
        self.url = url.rstrip("/")
        self.slots = threading.BoundedSemaphore(max_concurrent)
        self.set_aside_until = 0.0
        self.in_flight = 0
        self.max_in_flight = 0


class VisionClient:
    """Describes JPEG images with the hosts of ``config`` (thread-safe; use from many threads).

    Args:
        config: backend, hosts, model, prompt, limits.
        clock: monotonic seconds (tests pass their own).

    Attributes:
        max_in_flight: ``{host url: most requests seen in flight at once}`` (for the benchmark).
    """

    def __init__(self, config: VisionConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.hosts = [_Host(url, config.max_concurrent) for url in config.hosts]
        self._lock = threading.Condition()
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        limits = httpx.Limits(max_connections=config.max_concurrent * len(self.hosts))
        self._http = httpx.Client(timeout=config.timeout_s, headers=headers, limits=limits)

    @property
    def max_in_flight(self) -> dict[str, int]:
        """Most requests in flight at once, per host URL."""
        return {host.url: host.max_in_flight for host in self.hosts}

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def describe(self, jpeg: bytes) -> Description:
        """Describe one JPEG image, failing over across hosts.

        Raises:
            PermanentJobError: a host answered, but with no usable text (malformed JSON, empty content,
                HTTP 4xx other than 429).
            HostsDownError: every host is set aside or failed just now.
        """
        path, body = request_body(self.config, jpeg)
        tried: set[str] = set()
        reasons: list[str] = []
        while True:
            host = self._acquire(tried)
            if host is None:
                raise HostsDownError(
                    "no vision host available" + (f" ({'; '.join(reasons)})" if reasons else " (all set aside)"),
                    self._next_back_s(),
                )
            tried.add(host.url)
            started = self.clock()
            try:
                payload = self._post_with_retries(host, path, body)
            except _Transient as exc:
                reasons.append(f"{host.url}: {exc}")
                self._set_aside(host, str(exc))
                continue
            finally:
                self._release(host)
            return Description(answer_text(self.config.backend, payload), host.url, self.clock() - started)

    def _post_with_retries(self, host: _Host, path: str, body: dict) -> object:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Transient),
            wait=tenacity.wait_exponential(
                multiplier=self.config.retry_wait_s, min=self.config.retry_wait_s, max=10 * self.config.retry_wait_s
            ),
            stop=tenacity.stop_after_attempt(RETRIES_PER_HOST),
            reraise=True,
        )
        return retrying(self._post, host, path, body)

    def _post(self, host: _Host, path: str, body: dict) -> object:
        try:
            response = self._http.post(host.url + path, json=body)
        except httpx.TimeoutException as exc:
            raise _Transient(f"timed out after {self.config.timeout_s:g} s") from exc
        except httpx.TransportError as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code == 429 or response.status_code >= 500:
            raise _Transient(f"HTTP {response.status_code}")
        if response.status_code >= 400:
            raise PermanentJobError(
                f"vision host {host.url} refused the request: HTTP {response.status_code} {response.text[:200]!r}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise PermanentJobError(
                f"vision model gave a malformed answer (not JSON): {response.text[:200]!r}"
            ) from exc

    def _acquire(self, tried: set[str]) -> _Host | None:
        """The first usable host with a free slot, waiting for a slot; ``None`` when none is usable."""
        with self._lock:
            while True:
                now = self.clock()
                usable = [h for h in self.hosts if h.url not in tried and h.set_aside_until <= now]
                if not usable:
                    return None
                for host in usable:
                    if host.slots.acquire(blocking=False):
                        host.in_flight += 1
                        host.max_in_flight = max(host.max_in_flight, host.in_flight)
                        return host
                self._lock.wait(timeout=1.0)  # a slot frees (notify) or a host comes back

    def _release(self, host: _Host) -> None:
        with self._lock:
            host.in_flight -= 1
            host.slots.release()
            self._lock.notify_all()

    def _set_aside(self, host: _Host, reason: str) -> None:
        with self._lock:
            host.set_aside_until = self.clock() + self.config.set_aside_s
            self._lock.notify_all()
        log.warning("vision host %s set aside for %g s: %s", host.url, self.config.set_aside_s, reason)

    def _next_back_s(self) -> float:
        """Seconds until the first set-aside host may be tried again (at least 1)."""
        now = self.clock()
        return max(1.0, min((h.set_aside_until - now for h in self.hosts), default=1.0))


def describe_many(client: VisionClient, jpegs: Sequence[bytes]) -> list[Description | Exception]:
    """Describe ``jpegs`` concurrently (up to every host's slots at once), in order; errors are returned."""
    from concurrent.futures import ThreadPoolExecutor

    if not jpegs:
        return []
    workers = min(len(jpegs), client.config.max_concurrent * len(client.hosts))

    def one(jpeg: bytes) -> Description | Exception:
        try:
            return client.describe(jpeg)
        except Exception as exc:  # noqa: BLE001 - returned to the caller, recorded on its job
            return exc

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="describe") as pool:
        return list(pool.map(one, jpegs))
