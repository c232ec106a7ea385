"""Rows in Immich's own tables, valid on Immich v3.1's real schema: the demo's library and the tests'.

Immich v3.1 (``sql/immich/schema-v3.1.0.sql``) requires on ``asset`` ``"checksumAlgorithm"``
(enum ``sha1``/``sha1-path``), ``"fileCreatedAt"``, ``"fileModifiedAt"`` and ``"localDateTime"``, with no
default; ``status`` is the enum ``assets_status_enum`` (``trashed`` goes with ``"deletedAt"``); an album's
owner is its ``album_user`` row with role ``owner`` (there is no ``album."ownerId"``). These helpers write
what Immich's upload and album endpoints write, through the named queries of ``sql/queries/immich_rows.sql``.
They are never run against a real Immich: there Immich writes its own rows.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from immich_search.sqlfiles import query

ALBUM_ROLES = ("owner", "editor", "viewer")
"""Immich v3.1's ``album_user_role_enum``."""
VISIBILITIES = ("archive", "timeline", "hidden", "locked")
"""Immich v3.1's ``asset_visibility_enum``."""


def upsert_user(conn, email: str, name: str = "") -> str:
    """Insert the user ``email`` (or rename the existing one to ``name``); return its id as a string."""
    return str(conn.execute(query("immich_upsert_user"), {"email": email, "name": name}).fetchone()[0])


def asset_by_checksum(conn, owner_id: str, checksum: bytes) -> str | None:
    """The id of ``owner_id``'s uploaded asset with this SHA-1 ``checksum`` (20 bytes), or ``None``."""
    row = conn.execute(query("immich_asset_by_checksum"), {"owner_id": owner_id, "checksum": checksum}).fetchone()
    return str(row[0]) if row else None


def insert_asset(
    conn,
    owner_id: str,
    original_path: str,
    original_file_name: str,
    checksum: bytes,
    *,
    asset_id: str | None = None,
    asset_type: str = "IMAGE",
    taken_at: datetime | None = None,
    visibility: str = "timeline",
    trashed: bool = False,
    favourite: bool = False,
) -> str:
    """Insert an uploaded asset as Immich v3.1 stores one; return its id.

    Args:
        conn: a psycopg connection to an Immich-shaped database (the caller commits).
        owner_id: the owning user's id.
        original_path: the original's path as Immich stores it (under its media location, e.g. ``/data``).
        original_file_name: the file name shown in Immich.
        checksum: SHA-1 of the file (20 bytes); ``"checksumAlgorithm"`` is ``sha1`` as for any upload.
        asset_id: the id to use (a new uuid4 when ``None``).
        asset_type: ``IMAGE`` or ``VIDEO``.
        taken_at: aware datetime written to ``"fileCreatedAt"``, ``"fileModifiedAt"`` and
            ``"localDateTime"`` (the local time as UTC, as Immich does without a time zone); now when ``None``.
        visibility: one of :data:`VISIBILITIES`.
        trashed: in Immich's trash (``"deletedAt"`` set, status ``trashed``).
        favourite: ``"isFavorite"``.

    Raises:
        ValueError: ``visibility`` is not one of Immich's.
    """
    if visibility not in VISIBILITIES:
        raise ValueError(f"visibility must be one of {', '.join(VISIBILITIES)}, not {visibility!r}")
    asset_id = asset_id or str(uuid.uuid4())
    when = taken_at or datetime.now(timezone.utc)
    conn.execute(
        query("immich_insert_asset"),
        {
            "id": asset_id,
            "owner_id": owner_id,
            "type": asset_type,
            "original_path": original_path,
            "original_file_name": original_file_name,
            "checksum": checksum,
            "created_at": when,
            "modified_at": when,
            "local_date_time": when,
            "visibility": visibility,
            "trashed": trashed,
            "favourite": favourite,
        },
    )
    return asset_id


def insert_preview(conn, asset_id: str, path: str) -> None:
    """Record the asset's preview JPEG at ``path`` (as Immich stores it) in ``asset_file``."""
    conn.execute(query("immich_insert_preview"), {"asset_id": asset_id, "path": path})


def insert_exif(
    conn,
    asset_id: str,
    *,
    city: str | None = None,
    file_size: int | None = None,
    width: int | None = None,
    height: int | None = None,
) -> None:
    """Insert the asset's ``asset_exif`` row (``file_size`` in bytes, ``width``/``height`` in pixels)."""
    conn.execute(
        query("immich_insert_exif"),
        {"asset_id": asset_id, "city": city, "file_size": file_size, "width": width, "height": height},
    )


def share_partner(conn, shared_by: str, shared_with: str, *, in_timeline: bool = True) -> None:
    """``shared_by`` shares their library with ``shared_with`` (shown in their timeline when ``in_timeline``)."""
    conn.execute(
        query("immich_insert_partner"),
        {"shared_by": shared_by, "shared_with": shared_with, "in_timeline": in_timeline},
    )


def insert_album(
    conn, owner_id: str, name: str, asset_ids: list[str], shared_with: dict[str, str] | None = None
) -> str:
    """Create an album of ``owner_id`` holding ``asset_ids``; return its id.

    ``shared_with`` maps user ids to a role (``editor`` or ``viewer``); the owner gets the ``owner`` row.

    Raises:
        ValueError: a role is not one of :data:`ALBUM_ROLES`, or a second owner is given.
    """
    roles = {owner_id: "owner", **(shared_with or {})}
    for role in roles.values():
        if role not in ALBUM_ROLES:
            raise ValueError(f"album role must be one of {', '.join(ALBUM_ROLES)}, not {role!r}")
    if list(roles.values()).count("owner") != 1:
        raise ValueError("an album has exactly one owner")
    album_id = str(conn.execute(query("immich_insert_album"), {"name": name}).fetchone()[0])
    for user_id, role in roles.items():
        conn.execute(query("immich_insert_album_user"), {"album_id": album_id, "user_id": user_id, "role": role})
    conn.execute(query("immich_insert_album_assets"), {"album_id": album_id, "asset_ids": asset_ids})
    return album_id


def insert_person(conn, owner_id: str, name: str = "", *, hidden: bool = False, birth_date=None) -> str:
    """Create a person of ``owner_id`` (``name`` ``""``: unnamed, as Immich creates them); return its id."""
    row = conn.execute(
        query("immich_insert_person"),
        {"owner_id": owner_id, "name": name, "hidden": hidden, "birth_date": birth_date},
    ).fetchone()
    return str(row[0])


def insert_face(
    conn,
    asset_id: str,
    embedding,
    *,
    person_id: str | None = None,
    box: tuple[int, int, int, int] = (10, 10, 60, 60),
    image_size: tuple[int, int] = (640, 480),
    visible: bool = True,
    deleted: bool = False,
) -> str:
    """Insert a detected face of ``asset_id`` with its embedding (512 floats), assigned to ``person_id``.

    ``box`` is ``(x1, y1, x2, y2)`` in pixels of an image ``image_size`` ``(width, height)``; ``deleted``
    marks it as Immich's soft-deleted faces. The person's cover face is set on their first face. Returns the
    face id.
    """
    x1, y1, x2, y2 = box
    vector = "[" + ",".join(repr(float(value)) for value in embedding) + "]"
    face_id = str(
        conn.execute(
            query("immich_insert_face"),
            {
                "asset_id": asset_id,
                "person_id": person_id,
                "width": image_size[0],
                "height": image_size[1],
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
                "visible": visible,
                "deleted": deleted,
                "embedding": vector,
            },
        ).fetchone()[0]
    )
    if person_id:
        conn.execute(query("immich_set_face_asset"), {"face_id": face_id, "person_id": person_id})
    return face_id
