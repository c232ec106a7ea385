"""``immich-search serve``: the click command (the service is :mod:`immich_search.serve.app`)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from immich_search.commands.common import CONTEXT_SETTINGS, Settings, pass_settings, require_migrated
from immich_search.commands.options import clip_arch_option, model_dir_option

WARM_UP_USER = "00000000-0000-0000-0000-000000000000"
"""A user id that sees nothing: the warm-up search loads jieba's dictionary and checks our SQL functions."""


@click.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--immich-url",
    envvar="IMMICH_URL",
    metavar="URL",
    help="Immich's address as this service reaches it, e.g. http://immich-server:2283 (env IMMICH_URL).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: all).")
@click.option("--port", default=2284, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option(
    "--plain-queries",
    type=click.Choice(["hybrid", "passthrough"]),
    help="Who answers queries without ocr: (default: hybrid with --clip-model-dir, else Immich).",
)
@model_dir_option(
    read_env=False,
    help="Folder of the cn-clip ONNX models for plain and clip: queries (see `immich-search models list`).",
)
@clip_arch_option(read_env=False)
@click.option(
    "--timeout",
    default=30.0,
    show_default=True,
    type=click.FloatRange(0.1, 3600),
    help="Seconds to wait for Immich (connect, each read, each write), a database statement and a whole search.",
)
@click.option(
    "--auth-cache-seconds",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0, 3600),
    help="How long Immich's answer to /api/users/me is reused per credential (0: ask every time).",
)
@click.option("--db-pool-size", default=8, show_default=True, type=click.IntRange(1, 100), help="Database connections.")
@pass_settings
def serve(
    settings: Settings,
    immich_url: str | None,
    host: str,
    port: int,
    plain_queries: str | None,
    clip_model_dir: Path | None,
    clip_arch: str | None,
    timeout: float,
    auth_cache_seconds: float,
    db_pool_size: int,
) -> None:
    """Answer `ocr:` searches in Immich's own search bar: an HTTP service in front of Immich.

    Point browsers, the mobile app or your reverse proxy at this service instead of Immich (or route only
    POST /api/search/smart here, see docs/serve.md). A smart search whose query starts with `ocr:` is
    ranked by immich-search and answered in Immich's own format; plain queries go to the hybrid ranking
    with --clip-model-dir, else to Immich. Every other request, websockets included, passes through to
    Immich unchanged. Callers are who Immich says they are (their own cookie, token or API key); results
    hold only what Immich would show them, never the locked folder.

    \b
    Examples:
      immich-search serve --immich-url http://immich-server:2283 --host 0.0.0.0 --port 2284
      IMMICH_URL=http://localhost:2283 immich-search serve
      immich-search serve --immich-url http://localhost:2283 --clip-model-dir /var/lib/immich-search/models
    """
    import uvicorn

    from immich_search.db import open_pool
    from immich_search.errors import ImmichSearchError
    from immich_search.ranking.ocr_search import search_ocr
    from immich_search.serve.app import ServeConfig, create_app
    from immich_search.serve.pages import SERVE_POOL, ocr_page, warm_up
    from immich_search.serve.searchers import (
        build_plain_searcher,
        desc_searcher,
        ocr_searcher,
        with_statement_timeout,
    )
    from immich_search.serve.upstream import Upstream

    if not immich_url:
        raise click.UsageError(
            "give --immich-url URL (or set IMMICH_URL): Immich's address as this service reaches it, "
            "e.g. http://immich-server:2283"
        )
    try:
        Upstream(immich_url)  # checks the URL before anything is started
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--immich-url") from exc
    config = ServeConfig(immich_url=immich_url, timeout=timeout, auth_cache_seconds=auth_cache_seconds)
    url = settings.resolve_url()
    require_migrated(url)
    with open_pool(with_statement_timeout(url, timeout), max_size=db_pool_size, **SERVE_POOL) as pool:
        try:
            plain, plain_described = build_plain_searcher(pool, plain_queries, clip_model_dir, clip_arch)
        except ImmichSearchError as exc:
            raise click.ClickException(str(exc)) from exc
        app = create_app(
            config,
            ocr_searcher=ocr_searcher(pool),
            plain_searcher=plain,
            page_source=partial(ocr_page, pool),
            desc_searcher=desc_searcher(pool),
        )
        search_ocr(pool, "ocr:warm up", WARM_UP_USER, limit=1)
        warm_up(pool, WARM_UP_USER)
        click.echo(
            f"immich-search serve: listening on http://{host}:{port} in front of Immich at "
            f"{app.state.service.upstream.display}; ocr: and desc: queries answered here, "
            f"plain queries {plain_described}"
        )
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_config=None,  # the CLI's logging (-v, -vv)
            access_log=False,
            proxy_headers=False,  # X-Forwarded-For is passed on to Immich with the peer's address appended
            server_header=False,  # Immich's own headers go back unchanged
            date_header=False,
            ws="auto",
            timeout_graceful_shutdown=5,
        )
