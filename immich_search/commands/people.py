"""``immich-search people``: who is in a photo, and more photos of each of them."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import click
from rich.table import Table

from immich_search.commands.common import (
    CONTEXT_SETTINGS,
    Settings,
    console,
    pass_settings,
    require_migrated,
    resolve_user,
)

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("photo", metavar="ASSET_ID|FILE")
@click.option("--user", "who", metavar="EMAIL|ID", help="Answer as this Immich user (default: the only user).")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(0, 1000), help="Photos per person.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--include-hidden", is_flag=True, help="Also show people hidden in Immich.")
@click.option(
    "--ml-url",
    metavar="URL",
    help="Immich's machine-learning service, for a file not in the library "
    "(default: IMMICH_MACHINE_LEARNING_URL, else http://immich-machine-learning:3003).",
)
@click.option(
    "--max-distance",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 2),
    help="Largest cosine distance of a face to a person (Immich's facialRecognition.maxDistance).",
)
@click.option(
    "--source",
    type=click.Choice(["db", "api"]),
    default="db",
    show_default=True,
    help="Read Immich's database, or Immich's API with --immich-url and --api-key (the key decides the user).",
)
@click.option(
    "--immich-url", envvar="IMMICH_URL", metavar="URL", help="Immich's address for --source api (env IMMICH_URL)."
)
@click.option(
    "--api-key",
    envvar="IMMICH_API_KEY",
    metavar="KEY",
    help="Your Immich API key for --source api (env IMMICH_API_KEY).",
)
@pass_settings
def people(
    settings: Settings,
    photo: str,
    who: str | None,
    limit: int,
    as_json: bool,
    include_hidden: bool,
    ml_url: str | None,
    max_distance: float,
    source: str,
    immich_url: str | None,
    api_key: str | None,
) -> None:
    """Name the people in a photo and show up to --limit other photos of each, newest first.

    ASSET_ID is a photo in Immich: its faces are read from Immich's database. FILE is a photo on disk: when
    the library holds the same file (same SHA-1) it is answered like its asset; otherwise its faces are found
    by Immich's machine-learning service (--ml-url) and matched to your people as Immich matches faces; the
    photo is not uploaded. Faces that match nobody are counted as unknown; people nobody named show as
    "(no name)"; trashed and locked photos are never shown.

    \b
    Examples:
      immich-search people 3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b --user alice@example.com
      immich-search people ~/Pictures/party.jpg --ml-url http://localhost:3003 --limit 5
      immich-search people party.jpg --json --include-hidden
      immich-search people 3f1c9a2e-5b7d-4e8f-9a0b-1c2d3e4f5a6b --source api --immich-url http://immich:2283
    """
    from immich_search.db import open_pool
    from immich_search.people import people_in_asset
    from immich_search.sqlfiles import query

    path = None if _UUID.match(photo) else Path(photo).expanduser()
    data = None
    if path is not None:
        try:
            data = path.read_bytes()
        except OSError as error:
            raise click.ClickException(f"cannot read {photo}: {error.strerror or error}") from None
    if source == "api":
        report = _from_api(photo, data, immich_url, api_key, limit, include_hidden)
        _output(report, as_json)
        return
    url = settings.resolve_url()
    with open_pool(url) as pool:
        with pool.connection() as conn:
            require_migrated(conn)
        user_id, _ = resolve_user(pool, who)
        with pool.connection() as conn:
            asset_id = photo if path is None else None
            if data is not None:
                row = conn.execute(
                    query("asset_of_user_by_checksum"), {"checksum": hashlib.sha1(data).digest(), "user_id": user_id}
                ).fetchone()
                asset_id = str(row[0]) if row else None
            if asset_id is not None:
                try:
                    report = people_in_asset(conn, asset_id, user_id, limit=limit, include_hidden=include_hidden)
                except LookupError as error:
                    if path is None:
                        raise click.ClickException(str(error)) from None
                    report = None  # the same file, but in a library the caller may not see: read it afresh
            else:
                report = None
            if report is None:
                report = _from_file(conn, data, photo, user_id, limit, include_hidden, ml_url, max_distance)
    _output(report, as_json)


def _output(report, as_json: bool) -> None:
    """Print the report as JSON or as a table."""
    if as_json:
        click.echo(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
        return
    _print(report)


def _from_api(photo: str, data: bytes | None, immich_url, api_key, limit: int, include_hidden: bool):
    """The report through Immich's API (``--source api``); see :mod:`immich_search.people_api`."""
    from immich_search.people_api import PeopleApi, people_in_asset_api

    if not immich_url or not api_key:
        raise click.UsageError("--source api needs --immich-url and --api-key (or IMMICH_URL and IMMICH_API_KEY)")
    api = PeopleApi(immich_url, api_key)
    try:
        asset_id = photo
        if data is not None:
            asset_id = api.asset_by_checksum(hashlib.sha1(data).digest())
            if asset_id is None:
                raise click.ClickException(
                    f"{photo} is not in your library: matching a new photo's faces needs the face vectors in "
                    "Immich's database, which its API does not give (use --source db)"
                )
        try:
            return people_in_asset_api(api, asset_id, limit=limit, include_hidden=include_hidden)
        except LookupError as error:
            raise click.ClickException(str(error)) from None
    finally:
        api.close()


def _from_file(conn, data: bytes, photo: str, user_id: str, limit, include_hidden, ml_url, max_distance):
    """Faces of a file not in the caller's library, through the ML service; see :func:`people`."""
    from immich_search.face_ml import default_ml_url, detect_faces
    from immich_search.people import people_in_faces

    detected = detect_faces(_as_jpeg(data, photo), ml_url or default_ml_url())
    return people_in_faces(
        conn, detected, user_id, file=photo, limit=limit, include_hidden=include_hidden, max_distance=max_distance
    )


def _as_jpeg(data: bytes, photo: str) -> bytes:
    """The photo decoded (EXIF orientation applied) and sent as a JPEG, as Immich sends its preview JPEG to
    the ML service: any format Pillow reads works, whatever the ML service decodes.

    Raises:
        click.ClickException: empty, not an image, truncated or corrupt, or too large.
    """
    import io

    from immich_search.ml.errors import RequestError
    from immich_search.ml.images import decode_image

    try:
        image = decode_image(data)
    except RequestError as error:
        raise click.ClickException(f"{photo} is not a photo that can be read: {error}") from None
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def _print(report) -> None:
    """The report as a table of people (name, faces, photos) and a line for unknown faces."""
    subject = report.asset_id or report.file
    if not report.faces:
        console.print(f"no faces in {subject}")
        return
    table = Table("person", "birth date", "other photos (newest first)")
    for person in report.people:
        name = person.display_name + (" [hidden]" if person.is_hidden else "")
        photos = "\n".join(f"{p.file_name}  {p.asset_id}" for p in person.photos) or "-"
        table.add_row(name, person.birth_date.isoformat() if person.birth_date else "", photos)
    if report.people:
        console.print(table)
    if report.unknown_faces:
        console.print(f"{report.unknown_faces} unknown face(s): matching none of your people")
