"""Who is in a photo, and more photos of each: the report of ``immich-search people``.

An asset already in Immich is read from Immich's own face tables (``asset_face``, ``person``) through
``immich_search.people_in_v1``; a photo file not in the library gets its faces from Immich's machine-learning
service (:mod:`immich_search.face_ml`) and each face is matched to the caller's people by the nearest-face
search Immich runs (``immich_search.nearest_person_v1``). Photos of each person come from
``immich_search.photos_of_v1``, newest first. Visibility is Immich's (``can_see_v2``): a trashed, hidden or
locked photo is never shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from immich_search.sqlfiles import query

IMMICH_MAX_DISTANCE = 0.5
"""Immich's default ``machineLearning.facialRecognition.maxDistance`` (server/src/config.ts): the largest
cosine distance between two face embeddings of one person."""


@dataclass(frozen=True)
class Photo:
    """One photo of a person: its asset id, file name and when it was taken (``"fileCreatedAt"``, aware)."""

    asset_id: str
    file_name: str
    taken_at: datetime | None

    def as_json(self) -> dict:
        """JSON-ready dict: ``asset_id``, ``file_name``, ``taken_at`` (ISO 8601 or null)."""
        return {
            "asset_id": self.asset_id,
            "file_name": self.file_name,
            "taken_at": self.taken_at.isoformat() if self.taken_at else None,
        }


@dataclass
class Person:
    """A person of Immich (``person`` row) found in the photo, with up to ``--limit`` other photos of them.

    ``name`` is ``""`` for a person nobody has named yet; Immich then shows no name, and
    :attr:`display_name` gives the text a terminal shows instead.
    """

    id: str
    name: str
    is_hidden: bool
    birth_date: date | None
    faces: int = 0
    photos: list[Photo] = field(default_factory=list)

    @property
    def display_name(self) -> str:
        """The name, or ``(no name) <first 8 characters of the id>`` for an unnamed person."""
        return self.name or f"(no name) {self.id[:8]}"

    def as_json(self) -> dict:
        """JSON-ready dict: ``id``, ``name`` (``""`` when unnamed), ``is_hidden``, ``birth_date``, ``faces``,
        ``photos``."""
        return {
            "id": self.id,
            "name": self.name,
            "is_hidden": self.is_hidden,
            "birth_date": self.birth_date.isoformat() if self.birth_date else None,
            "faces": self.faces,
            "photos": [photo.as_json() for photo in self.photos],
        }


@dataclass(frozen=True)
class Face:
    """One face in the photo: bounding box ``(x1, y1, x2, y2)`` in pixels of an ``image_width`` x
    ``image_height`` image, its person id (``None``: unknown), its Immich face id (``None`` for a file not in
    the library) and, for a file, the cosine distance to the nearest face of that person."""

    box: tuple[int, int, int, int]
    image_width: int
    image_height: int
    person_id: str | None
    face_id: str | None = None
    distance: float | None = None

    def as_json(self) -> dict:
        """JSON-ready dict of the face."""
        x1, y1, x2, y2 = self.box
        return {
            "face_id": self.face_id,
            "person_id": self.person_id,
            "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
            "image_width": self.image_width,
            "image_height": self.image_height,
            "distance": self.distance,
        }


@dataclass
class PeopleReport:
    """The answer of ``immich-search people``: the photo asked about (``asset_id`` when in Immich, ``file``
    when read from disk), its faces, and its people in the order their first face appears."""

    asset_id: str | None
    file: str | None
    faces: list[Face]
    people: list[Person]

    @property
    def unknown_faces(self) -> int:
        """How many faces belong to nobody (Immich assigned none, or none of the caller's people matched)."""
        return sum(1 for face in self.faces if face.person_id is None)

    def as_json(self) -> dict:
        """JSON-ready dict: ``asset_id``, ``file``, ``people``, ``unknown_faces``, ``faces``."""
        return {
            "asset_id": self.asset_id,
            "file": self.file,
            "people": [person.as_json() for person in self.people],
            "unknown_faces": self.unknown_faces,
            "faces": [face.as_json() for face in self.faces],
        }


def _add_person(people: dict[str, Person], person_id: str, name, is_hidden, birth_date) -> None:
    """Count one more face of ``person_id``, adding the person on their first face."""
    if person_id not in people:
        people[person_id] = Person(str(person_id), name or "", bool(is_hidden), birth_date)
    people[person_id].faces += 1


def _fill_photos(conn, people: dict[str, Person], user_id: str, limit: int, exclude: str | None) -> None:
    """Give each person up to ``limit`` photos the caller may see, newest first, other than ``exclude``."""
    for person in people.values():
        rows = conn.execute(
            query("photos_of_person"),
            {"person_id": person.id, "user_id": user_id, "k": limit, "exclude": exclude},
        ).fetchall()
        person.photos = [Photo(str(asset_id), name, taken_at) for asset_id, name, taken_at in rows]


def people_in_asset(
    conn, asset_id: str, user_id: str, *, limit: int = 10, include_hidden: bool = False
) -> PeopleReport:
    """The people in an asset already in Immich, from its faces in the database.

    Args:
        conn: psycopg connection to Immich's database, migrated to revision 0009 or later.
        asset_id: the asset's id (uuid text).
        user_id: the caller's Immich user id; only an asset and photos the caller may see are used.
        limit: photos per person (other than this asset), 0 or more.
        include_hidden: also report people hidden in Immich.

    Returns:
        the report; ``faces`` empty for a photo with no (visible) face.

    Raises:
        LookupError: no such asset, or the caller may not see it (trashed, locked, someone else's).
    """
    rows = conn.execute(
        query("people_in_asset"), {"asset_id": asset_id, "user_id": user_id, "include_hidden": include_hidden}
    ).fetchall()
    if not rows and not _visible(conn, asset_id, user_id):
        raise LookupError(f"no asset {asset_id} that this user may see")
    faces: list[Face] = []
    people: dict[str, Person] = {}
    for face_id, person_id, name, is_hidden, birth_date, x1, y1, x2, y2, width, height in rows:
        faces.append(Face((x1, y1, x2, y2), width, height, str(person_id) if person_id else None, str(face_id)))
        if person_id:
            _add_person(people, str(person_id), name, is_hidden, birth_date)
    _fill_photos(conn, people, user_id, limit, asset_id)
    return PeopleReport(asset_id, None, faces, list(people.values()))


def _visible(conn, asset_id: str, user_id: str) -> bool:
    """Whether the caller may see ``asset_id`` (a photo with no face still has an empty answer)."""
    return bool(conn.execute(query("asset_visible_to"), {"asset_id": asset_id, "user_id": user_id}).fetchone()[0])


def people_in_faces(
    conn,
    detected,
    user_id: str,
    *,
    file: str,
    limit: int = 10,
    include_hidden: bool = False,
    max_distance: float = IMMICH_MAX_DISTANCE,
) -> PeopleReport:
    """The people in a photo file not in the library, from faces detected by Immich's ML protocol.

    Each face goes to the person of the caller's nearest face (cosine distance at most ``max_distance``,
    Immich's rule); a face nearest to a hidden person is left out unless ``include_hidden``.

    Args:
        conn: psycopg connection to Immich's database (revision 0009 or later).
        detected: :class:`immich_search.face_ml.DetectedFaces` of the file.
        user_id: the caller's Immich user id.
        file: the file's path as given (reported back).
        limit: photos per person.
        include_hidden: also report hidden people.
        max_distance: the largest cosine distance that still matches (Immich's default 0.5).

    Returns:
        the report; faces that match nobody have ``person_id`` ``None``.
    """
    faces: list[Face] = []
    people: dict[str, Person] = {}
    for found in detected.faces:
        row = conn.execute(
            query("nearest_person"),
            {"embedding": _vector_text(found.embedding), "user_id": user_id, "max_distance": max_distance},
        ).fetchone()
        person_id = str(row[0]) if row else None
        if row and row[3] and not include_hidden:
            continue  # a hidden person: left out, as Immich leaves them out of its people lists
        faces.append(
            Face(
                found.box, detected.image_width, detected.image_height, person_id, None, float(row[1]) if row else None
            )
        )
        if row:
            _add_person(people, person_id, row[2], row[3], row[4])
    _fill_photos(conn, people, user_id, limit, None)
    return PeopleReport(None, file, faces, list(people.values()))


def _vector_text(embedding) -> str:
    """pgvector's text form of a sequence of floats: ``[0.1,0.2,...]``."""
    return "[" + ",".join(repr(float(value)) for value in embedding) + "]"
