"""The ``ml`` Starlette application: Immich's ML protocol and MT-Photos' API over one set of models."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette

from immich_search.ml.immich_routes import immich_routes
from immich_search.ml.mtphotos_routes import mtphotos_routes
from immich_search.ml.services import MlServices


def build_app(services: MlServices) -> Starlette:
    """Return the ASGI app serving ``services``; closing the app closes them (threads, HTTP client)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await services.aclose()

    app = Starlette(routes=[*immich_routes(), *mtphotos_routes()], lifespan=lifespan)
    app.state.services = services
    return app
