"""``immich-search models download``: against a local HTTP server serving tiny files (never the network).

The server supports ``Range`` (206), can break a response off halfway (to test resuming) and records
every request, so the tests see what the client asked for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from immich_search.cli import cli
from immich_search.commands import models as model_commands
from immich_search.errors import ConfigError
from immich_search.runtime import download as model_download
from immich_search.runtime.download import DownloadError, Source, download_sources, download_variant
from immich_search.runtime.manifest import load_manifest
from tests.clip_fixtures import TinyClip


class FileServer:
    """Serve ``files`` (name -> bytes) on 127.0.0.1 with Range support; ``break_after`` cuts bodies short."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.break_after: int | None = None
        self.ignore_range = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                outer.requests.append((self.path, self.headers.get("Range")))
                data = outer.files.get(name)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                range_header = self.headers.get("Range")
                if range_header and not outer.ignore_range:
                    start = int(range_header.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.break_after is not None:
                    self.wfile.write(body[: outer.break_after])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mirror/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def tiny_files(tmp_path):
    """The tiny ViT-B-16 pair and a vocab.txt, as a mirror would serve them."""
    source = tmp_path / "source"
    tiny = TinyClip(embed_dim=512)
    folder = tiny.write_model_dir(source)
    files = {path.name: path.read_bytes() for path in folder.iterdir()}
    files["vocab.txt"] = (source / "vocab.txt").read_bytes()
    return files


def trust_vocab(monkeypatch, data: bytes) -> None:
    """Make the manifest's vocab.txt checksum that of the tiny test vocabulary (download and verify)."""
    manifest = load_manifest()
    info = dataclasses.replace(manifest.vocab, sha256=hashlib.sha256(data).hexdigest())
    patched = dataclasses.replace(manifest, vocab=info)
    monkeypatch.setattr(model_commands, "load_manifest", lambda: patched)
    monkeypatch.setattr(model_download, "load_manifest", lambda: patched)


def test_sources_come_from_the_manifest_or_a_base_url():
    precision, sources = download_sources("vit-b-16")
    assert precision == "fp32"
    names = [source.file for source in sources]
    assert names == ["vit-b-16.img.fp32.onnx", "vit-b-16.txt.fp32.onnx", "vocab.txt"]
    assert sources[0].url.endswith("/eisneim/cn-clip_vit-b-16/resolve/main/vit-b-16.img.fp32.onnx")
    assert sources[2].sha256  # cn-clip's vocab.txt checksum is in the manifest
    _, mirrored = download_sources("ViT-B-16", base_url="http://mirror.local/models")
    assert [source.url for source in mirrored] == [f"http://mirror.local/models/{name}" for name in names]
    with pytest.raises(ConfigError, match="models export --arch ViT-H-14"):
        download_sources("ViT-H-14")
    with pytest.raises(ConfigError, match="not an http"):
        download_sources("ViT-B-16", base_url="ftp://mirror")


def test_cli_downloads_from_a_base_url_then_verifies(tmp_path, tiny_files, monkeypatch):
    trust_vocab(monkeypatch, tiny_files["vocab.txt"])
    model_dir = tmp_path / "models"
    with FileServer(tiny_files) as server:
        result = CliRunner().invoke(
            cli, ["models", "download", "ViT-B-16", "--model-dir", str(model_dir), "--base-url", server.url]
        )
        assert result.exit_code == 0, result.output
        assert "verified: ViT-B-16 fp32" in result.output
        assert sorted(path for path, _ in server.requests) == [
            "/mirror/vit-b-16.img.fp32.onnx",
            "/mirror/vit-b-16.txt.fp32.onnx",
            "/mirror/vocab.txt",
        ]
        for name in ("vit-b-16.img.fp32.onnx", "vit-b-16.txt.fp32.onnx"):
            assert (model_dir / "ViT-B-16" / name).read_bytes() == tiny_files[name]
        assert (model_dir / "vocab.txt").read_bytes() == tiny_files["vocab.txt"]
        assert not list(model_dir.rglob("*.part"))
        # a second run finds everything in place and fetches nothing
        server.requests.clear()
        again = CliRunner().invoke(
            cli, ["models", "download", "ViT-B-16", "--model-dir", str(model_dir), "--base-url", server.url]
        )
        assert again.exit_code == 0 and again.output.count("present") == 2
        assert server.requests == []


def test_an_interrupted_download_resumes_with_a_range_request(tmp_path, tiny_files):
    name = "vit-b-16.img.fp32.onnx"
    data = tiny_files[name]
    sources = [Source(name, "", hashlib.sha256(data).hexdigest())]
    with FileServer(tiny_files) as server:
        sources = [Source(name, server.url + name, hashlib.sha256(data).hexdigest())]
        server.break_after = len(data) // 3
        with pytest.raises(DownloadError, match="run the same command again to resume"):
            download_variant("ViT-B-16", tmp_path, sources=sources)
        partial = tmp_path / "ViT-B-16" / (name + ".part")
        assert partial.stat().st_size == len(data) // 3
        server.break_after = None
        seen = []
        results = download_variant(
            "ViT-B-16", tmp_path, sources=sources, progress=lambda n, done, total: seen.append((done, total))
        )
        assert results == [(tmp_path / "ViT-B-16" / name, "resumed")]
        assert server.requests[-1][1] == f"bytes={len(data) // 3}-"
        assert (tmp_path / "ViT-B-16" / name).read_bytes() == data
        assert seen[-1] == (len(data), len(data))  # progress counts the whole file, resumed part included


def test_a_server_that_ignores_range_restarts_the_file(tmp_path, tiny_files):
    name = "vit-b-16.txt.fp32.onnx"
    data = tiny_files[name]
    (tmp_path / "ViT-B-16").mkdir()
    (tmp_path / "ViT-B-16" / (name + ".part")).write_bytes(b"garbage from an older attempt")
    with FileServer(tiny_files) as server:
        server.ignore_range = True
        source = Source(name, server.url + name, hashlib.sha256(data).hexdigest())
        assert download_variant("ViT-B-16", tmp_path, sources=[source])[0][1] == "downloaded"
    assert (tmp_path / "ViT-B-16" / name).read_bytes() == data


def test_a_checksum_mismatch_deletes_the_file_and_says_so(tmp_path, tiny_files):
    name = "vit-b-16.img.fp32.onnx"
    with FileServer(tiny_files) as server:
        source = Source(name, server.url + name, "0" * 64)
        with pytest.raises(DownloadError, match="checksum mismatch"):
            download_variant("ViT-B-16", tmp_path, sources=[source])
    assert not (tmp_path / "ViT-B-16" / name).exists()
    assert not (tmp_path / "ViT-B-16" / (name + ".part")).exists()


def test_http_errors_and_unreachable_servers_are_clear(tmp_path, tiny_files):
    with FileServer(tiny_files) as server:
        missing = Source("nothing.onnx", server.url + "nothing.onnx", None)
        with pytest.raises(DownloadError, match="HTTP 404"):
            download_variant("ViT-B-16", tmp_path, sources=[missing])
        url = server.url
    gone = Source("vit-b-16.img.fp32.onnx", url + "vit-b-16.img.fp32.onnx", None)
    with pytest.raises(DownloadError, match="broke off"):
        download_variant("ViT-B-16", tmp_path, sources=[gone], client=httpx.Client(timeout=2))
    result = CliRunner().invoke(
        cli, ["models", "download", "ViT-B-16", "--model-dir", str(tmp_path), "--base-url", url, "--no-verify"]
    )
    assert result.exit_code == 1 and "Error:" in result.output and "Traceback" not in result.output


def test_a_corrupt_download_fails_verification(tmp_path, tiny_files, monkeypatch):
    trust_vocab(monkeypatch, tiny_files["vocab.txt"])
    files = dict(tiny_files)
    files["vit-b-16.txt.fp32.onnx"] = b"not an onnx model at all"
    model_dir: Path = tmp_path / "models"
    with FileServer(files) as server:
        result = CliRunner().invoke(
            cli, ["models", "download", "--model-dir", str(model_dir), "--base-url", server.url]
        )
    assert result.exit_code == 1
    assert "verification failed for ViT-B-16 fp32" in result.output
