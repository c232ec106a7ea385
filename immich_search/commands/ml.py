"""``immich-search ml``: serve cn-clip and our OCR to Immich (its ML protocol) and MT Photos (its AI API)."""

from __future__ import annotations

from pathlib import Path

import click

from immich_search.commands.options import clip_model_location
from immich_search.errors import ImmichSearchError
from immich_search.ml.images import DEFAULT_MAX_IMAGE_BYTES
from immich_search.ml.pool import DEFAULT_TIMEOUT_S


def _split_urls(values: tuple[str, ...]) -> list[str]:
    """Flatten ``--upstream`` values; each may hold several URLs separated by commas or spaces."""
    urls: list[str] = []
    for value in values:
        urls.extend(part for part in value.replace(",", " ").split() if part)
    return urls


@click.command(name="ml")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", default=3003, show_default=True, type=click.IntRange(1, 65535), help="Port (Immich ML's).")
@click.option(
    "--upstream",
    "upstream",
    multiple=True,
    metavar="URL",
    envvar="IMMICH_SEARCH_ML_UPSTREAM",
    help="Stock Immich ML service(s) for the tasks not served here (faces), tried in order "
    "(repeat, or comma-separated; env IMMICH_SEARCH_ML_UPSTREAM).",
)
@click.option(
    "--api-key",
    envvar="IMMICH_SEARCH_ML_API_KEY",
    metavar="KEY",
    help="Key MT Photos sends in its api-key header (env IMMICH_SEARCH_ML_API_KEY); without one that API is off.",
)
@click.option("--clip/--no-clip", default=True, show_default=True, help="Serve cn-clip (needs the model files).")
@click.option("--ocr/--no-ocr", default=True, show_default=True, help="Serve OCR.")
@clip_model_location
@click.option(
    "--clip-concurrency",
    type=click.IntRange(1, 64),
    help="CLIP calls running at once per encoder [default: 1, as onnxruntime uses every core for one; "
    "with --device rknn one per NPU core].",
)
@click.option("--ocr-concurrency", default=1, show_default=True, type=click.IntRange(1, 64), help="OCR calls at once.")
@click.option(
    "--threads",
    type=click.IntRange(1, 256),
    envvar="IMMICH_SEARCH_ML_THREADS",
    help="onnxruntime threads per model call [default: one per core].",
)
@click.option(
    "--timeout",
    default=DEFAULT_TIMEOUT_S,
    show_default=True,
    type=click.FloatRange(1),
    help="Seconds a request may wait for and run on a model; later it gets 503.",
)
@click.option(
    "--max-image-mb",
    default=DEFAULT_MAX_IMAGE_BYTES // (1024 * 1024),
    show_default=True,
    type=click.IntRange(1, 1024),
    help="Largest image upload accepted, in MiB.",
)
def ml(
    host: str,
    port: int,
    upstream: tuple[str, ...],
    api_key: str | None,
    clip: bool,
    ocr: bool,
    clip_model_dir: Path | None,
    clip_arch: str | None,
    clip_concurrency: int | None,
    ocr_concurrency: int,
    threads: int | None,
    timeout: float,
    max_image_mb: int,
) -> None:
    """Serve Chinese-CLIP and OCR to Immich through its own machine-learning protocol.

    Set Immich's machine-learning URL to this service and its CLIP model to the name printed at start-up
    (cn-clip/ViT-B-16__openai for the default model), then re-run Smart Search and OCR in Immich's job
    page: Immich's own smart search understands Chinese and its OCR uses our engine. Faces go to the
    --upstream Immich ML services. MT Photos can use the same service (--api-key). See docs/ml.md.

    \b
    Examples:
      immich-search ml --host 0.0.0.0 --port 3003
      immich-search ml --upstream http://immich-machine-learning:3003 --api-key "$MT_KEY"
      immich-search ml --no-clip          # OCR only
    """
    import uvicorn

    from immich_search.ml.app import build_app
    from immich_search.ml.services import MlServices, make_pool
    from immich_search.ml.upstream import Upstream, check_upstream_urls
    from immich_search.runtime.backend import model_concurrency

    try:
        urls = check_upstream_urls(_split_urls(upstream))
        clip_service = _load_clip(clip_model_dir, clip_arch, threads) if clip else None
        ocr_service = _load_ocr(threads) if ocr else None
    except ImmichSearchError as exc:
        raise click.ClickException(str(exc)) from exc
    if clip_service is None and ocr_service is None and not urls:
        raise click.UsageError("nothing to serve: --no-clip and --no-ocr without --upstream")
    services = MlServices(
        clip=clip_service,
        ocr=ocr_service,
        pool=make_pool(clip_concurrency or model_concurrency(), ocr_concurrency),
        upstream=Upstream(urls),
        api_key=api_key or None,
        timeout_s=timeout,
        max_image_bytes=max_image_mb * 1024 * 1024,
    )
    click.echo(_banner(host, port, services))
    uvicorn.run(
        build_app(services),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=5,
    )


def _load_clip(model_dir: Path | None, arch: str | None, threads: int | None):
    """Load and warm up cn-clip on the configured device; a missing model raises ModelError saying what to run."""
    from immich_search.ml.clip import ClipService
    from immich_search.runtime.backend import load_clip
    from immich_search.runtime.loading import download_hint
    from immich_search.runtime.session import ModelError

    try:
        service = ClipService(load_clip(model_dir, arch, threads=threads))
        service.warm_up()
    except ModelError as error:
        raise ModelError(f"{error}; {download_hint(arch)} (or start with --no-clip to serve OCR only)") from error
    return service


def _load_ocr(threads: int | None):
    """Build the OCR service and its default engine now (a broken install fails at start-up)."""
    from immich_search.ml.ocr import OcrOptions, OcrService, rapidocr_factory

    service = OcrService(rapidocr_factory(threads))
    service.engine(OcrOptions())
    return service


def _banner(host: str, port: int, services) -> str:
    """Return the start-up line: where, what is served, the CLIP name to type in Immich."""
    from immich_search.ml.names import immich_name

    parts = [f"immich-search ml: listening on http://{host}:{port}"]
    if services.clip is not None:
        variant = services.clip.variant
        parts.append(
            f"CLIP cn-clip {variant.arch} ({variant.embed_dim} dimensions): set Immich's CLIP model to "
            f"{immich_name(variant)!r}"
        )
    parts.append("OCR on" if services.ocr is not None else "OCR off")
    parts.append(f"upstream {', '.join(services.upstream.urls)}" if services.upstream.urls else "no upstream")
    parts.append("MT-Photos API on" if services.api_key else "MT-Photos API off (no --api-key)")
    return "; ".join(parts)
