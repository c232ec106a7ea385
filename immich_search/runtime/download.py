"""``immich-search models download ARCH``: fetch published cn-clip ONNX exports, no torch needed.

The sources are listed in ``models/downloads.json`` (only ViT-B-16 fp32 has a published export today;
the other variants are made with ``models export``). Every file is fetched over HTTP(S) into
``<file>.part`` beside its final place, resumed with a ``Range`` request when a ``.part`` is already
there, checked against its SHA-256 where one is known (cn-clip's vocab.txt always; the ONNX files when
the publisher lists one), and only then renamed into place. ``--base-url`` replaces every source with
``<base-url><file name>`` (a mirror holding the files under their own names). After downloading, the
files are verified as ``models verify`` does (signature and a test encoding).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from immich_search.errors import ConfigError, ImmichSearchError
from immich_search.runtime.manifest import default_model_dir, load_manifest, variant_dir

CHUNK_BYTES = 1024 * 1024
"""Bytes read and hashed per step."""

Progress = Callable[[str, int, int | None], None]
"""Called as ``(file name, bytes so far, total bytes or None)`` while a file downloads."""


class DownloadError(ImmichSearchError):
    """A download failed (network, HTTP status, checksum); the message names the file and the URL."""


@dataclass(frozen=True)
class Source:
    """One file to fetch.

    Attributes:
        file: its name in the model folder.
        url: where to fetch it.
        sha256: expected hex SHA-256, or ``None`` when unknown.
        approx_bytes: the publisher's size, for messages (the server's Content-Length is used when given).
        vocab: whether this is cn-clip's vocab.txt (stored at the model directory's top).
    """

    file: str
    url: str
    sha256: str | None
    approx_bytes: int | None = None
    vocab: bool = False


def _read_downloads() -> dict:
    """Return the packaged ``downloads.json`` (the source tree's when not installed)."""
    try:
        text = resources.files("immich_search.models").joinpath("downloads.json").read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        text = (Path(__file__).resolve().parent.parent / "models" / "downloads.json").read_text("utf-8")
    return json.loads(text)


def downloadable_archs() -> list[str]:
    """Return the cn-clip architectures with a published ONNX export in ``downloads.json``."""
    return list(_read_downloads()["variants"])


def download_sources(arch: str, base_url: str | None = None, with_vocab: bool = True) -> tuple[str, list[Source]]:
    """Return ``(precision, sources)`` for a variant: its ONNX files, then vocab.txt when asked.

    Args:
        arch: cn-clip architecture (any case).
        base_url: a mirror: each file is fetched from ``<base_url><file name>``.
        with_vocab: include cn-clip's vocab.txt.

    Raises:
        ConfigError: unknown arch, no published export for it, or a base URL that is not http(s).
    """
    variant = load_manifest().variant(arch)
    table = _read_downloads()
    entry = table["variants"].get(variant.arch)
    if entry is None:
        known = ", ".join(table["variants"])
        raise ConfigError(
            f"no published ONNX export of cn-clip {variant.arch} is known (downloadable: {known}); "
            f"export it with `immich-search models export --arch {variant.arch} --checkpoint PATH`"
        )
    if base_url is not None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"--base-url {base_url!r} is not an http(s) URL")
        base_url = base_url if base_url.endswith("/") else base_url + "/"
    precision = str(entry["precision"])
    known_sha = {variant.file(role, precision).file: variant.file(role, precision).sha256 for role in ("image", "text")}
    sources = []
    for item in entry["files"]:
        name = str(item["file"])
        url = urljoin(base_url, name) if base_url else urljoin(str(entry["base_url"]), name)
        sha = item.get("sha256") or known_sha.get(name)
        sources.append(Source(name, url, sha, item.get("approx_bytes")))
    if with_vocab:
        vocab = table["vocab"]
        url = urljoin(base_url, vocab["file"]) if base_url else str(vocab["url"])
        sources.append(Source(vocab["file"], url, load_manifest().vocab.sha256, vocab.get("approx_bytes"), vocab=True))
    return precision, sources


def sha256_of(path: Path) -> str:
    """Return the hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(source: Source, destination: Path, client: httpx.Client, progress: Progress | None = None) -> str:
    """Download ``source`` to ``destination`` through ``destination.part``, resuming a partial file.

    Returns:
        ``"present"`` (already there and, where known, with the right checksum), ``"resumed"`` or
        ``"downloaded"``.

    Raises:
        DownloadError: the server failed or refused, the connection broke (the ``.part`` is kept for
            the next try), or the checksum differs (the ``.part`` is deleted).
    """
    if destination.is_file() and destination.stat().st_size > 0:
        if source.sha256 is None or sha256_of(destination) == source.sha256:
            return "present"
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".part")
    start = partial.stat().st_size if partial.is_file() else 0
    headers = {"Range": f"bytes={start}-"} if start else {}
    outcome = "resumed" if start else "downloaded"
    try:
        with client.stream("GET", source.url, headers=headers, follow_redirects=True) as response:
            if response.status_code == 416 and start:
                outcome = "resumed"  # the .part already holds the whole file
            elif response.status_code == 206 and start:
                _write(response, partial, "ab", start, _total(response, start), source.file, progress)
            elif response.status_code == 200:
                outcome = "downloaded"  # the server ignored the range: start over
                _write(response, partial, "wb", 0, _total(response, 0), source.file, progress)
            else:
                raise DownloadError(f"{source.file}: {source.url} answered HTTP {response.status_code}")
    except httpx.HTTPError as error:
        raise DownloadError(
            f"{source.file}: download from {source.url} broke off ({type(error).__name__}: {error}); "
            "run the same command again to resume, or use --base-url with a mirror"
        ) from error
    if source.sha256 is not None:
        actual = sha256_of(partial)
        if actual != source.sha256:
            partial.unlink()
            raise DownloadError(
                f"{source.file}: checksum mismatch (SHA-256 {actual}, expected {source.sha256}) from {source.url}; "
                "the file was deleted"
            )
    os.replace(partial, destination)
    return outcome


def _total(response: httpx.Response, start: int) -> int | None:
    """Return the full file size from Content-Length (plus the resume offset), or None."""
    length = response.headers.get("content-length")
    return start + int(length) if length and length.isdigit() else None


def _write(
    response: httpx.Response,
    partial: Path,
    mode: str,
    done: int,
    total: int | None,
    name: str,
    progress: Progress | None,
) -> None:
    """Append (``ab``) or write (``wb``) the response body to ``partial``, reporting progress."""
    with partial.open(mode) as handle:
        for chunk in response.iter_bytes():  # as received: a broken connection keeps what arrived
            handle.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(name, done, total)


def download_variant(
    arch: str,
    model_dir: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    progress: Progress | None = None,
    sources: Sequence[Source] | None = None,
    client: httpx.Client | None = None,
) -> list[tuple[Path, str]]:
    """Download a variant's published ONNX files (and vocab.txt when none is found) into ``model_dir``.

    Args:
        arch: cn-clip architecture.
        model_dir: default :func:`~immich_search.runtime.manifest.default_model_dir`.
        base_url: a mirror to fetch every file from.
        progress: progress callback.
        sources: the files to fetch instead of the packaged table's (tests, other mirrors).
        client: the HTTP client (default: one with a 30 s connect / read timeout).

    Returns:
        ``(path, outcome)`` per file (outcome as :func:`fetch` returns it).

    Raises:
        ConfigError: see :func:`download_sources`. DownloadError: see :func:`fetch`.
    """
    from immich_search.runtime.session import ModelError
    from immich_search.runtime.tokenizer import find_vocab_file

    variant = load_manifest().variant(arch)
    root = Path(model_dir) if model_dir is not None else default_model_dir()
    folder = root / variant.arch if not variant_dir(root, variant).is_dir() else variant_dir(root, variant)
    try:
        find_vocab_file(folder, root)
        need_vocab = False
    except ModelError:
        need_vocab = True
    if sources is None:
        _, sources = download_sources(variant.arch, base_url, with_vocab=need_vocab)
    own_client = client is None
    client = client or httpx.Client(timeout=httpx.Timeout(30.0))
    results = []
    try:
        for source in sources:
            if source.vocab and not need_vocab:
                continue
            destination = (root if source.vocab else folder) / source.file
            results.append((destination, fetch(source, destination, client, progress)))
    finally:
        if own_client:
            client.close()
    return results
