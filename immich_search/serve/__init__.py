"""``immich-search serve``: a small HTTP service in front of Immich for its own search bar.

It answers ``POST /api/search/smart`` when the query starts with ``ocr:`` (and, when configured, plain
queries) from immich_search's ranking, and passes every other request through to Immich unchanged.

Modules (kept import-light: the CLI imports :mod:`immich_search.commands.serve` at start-up):

* :mod:`~immich_search.serve.app`: the ASGI application (:func:`~immich_search.serve.app.create_app`);
* :mod:`~immich_search.serve.smart_search`: ``SmartSearchDto`` validation, filters, pages, the response;
* :mod:`~immich_search.serve.identity`: who is calling, asked of Immich and cached briefly;
* :mod:`~immich_search.serve.upstream`: Immich as an upstream: API calls, HTTP and websocket passthrough;
* :mod:`~immich_search.serve.errors`: Immich-style error bodies;
* :mod:`~immich_search.commands.serve`: the click command.
"""
