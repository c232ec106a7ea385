"""Filtered vector search keeps its recall when the caller owns a small share of a large library.

Many owners share one clip table; search_clip_v3 must return the caller's true nearest neighbours (an
exact scan computed here with numpy), whether it answers with the exact scan (small visible sets) or
the index (iterative scans on pgvector >= 0.8; exact fallback when the index returns too few rows).
Immich's visibility rules hold in every path.
"""

from __future__ import annotations

import uuid

import numpy as np
import psycopg
import pytest
from pgvector import Vector
from pgvector.psycopg import register_vector

from immich_search import immich_rows
from tests.conftest import scratch_database

DIM = 64
OWNERS = 24
PER_OWNER = 500
SMALL = 15  # the small owner's assets
K = 10


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    # Clustered, like real CLIP embeddings: 40 centres plus noise.
    centres = rng.standard_normal((40, DIM))
    rows = centres[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, DIM))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def library(server, migrated_template):
    """OWNERS owners of PER_OWNER assets, a small owner of SMALL, partners, locked/archived/trashed ones."""
    with scratch_database(server, migrated_template) as url:
        rng = np.random.default_rng(7)
        with psycopg.connect(url) as conn:
            register_vector(conn)
            conn.execute("SELECT immich_search.clip_configure_v1('test-64', %s)", (DIM,))
            users = [immich_rows.upsert_user(conn, f"u{i}@x") for i in range(OWNERS + 1)]
            small = users[-1]
            owners = [u for u in users[:-1] for _ in range(PER_OWNER)] + [small] * SMALL
            # Every 7th asset of the big owners is archived, every 11th locked, every 13th trashed.
            states = []
            for i, _ in enumerate(owners):
                visibility = "locked" if i % 11 == 0 else "archive" if i % 7 == 0 else "timeline"
                states.append((visibility, i % 13 == 0))
            ids = [str(uuid.uuid4()) for _ in owners]
            vectors = unit_rows(rng, len(ids))
            with conn.cursor().copy(
                'COPY public.asset (id, "ownerId", type, "originalPath", "originalFileName", checksum, '
                '"checksumAlgorithm", "fileCreatedAt", "fileModifiedAt", "localDateTime", visibility, status, '
                '"deletedAt") FROM STDIN'
            ) as copy:
                for i, (asset_id, owner) in enumerate(zip(ids, owners, strict=True)):
                    visibility, trashed = states[i]
                    copy.write_row(
                        (
                            asset_id,
                            owner,
                            "IMAGE",
                            f"/data/{i}.jpg",
                            f"{i}.jpg",
                            i.to_bytes(20, "big"),
                            "sha1",
                            "2025-06-01",
                            "2025-06-01",
                            "2025-06-01",
                            visibility,
                            "trashed" if trashed else "active",
                            "2026-01-01" if trashed else None,
                        )
                    )
            with conn.cursor().copy("COPY immich_search.clip (asset_id, model, embedding) FROM STDIN") as copy:
                for asset_id, vector in zip(ids, vectors, strict=True):
                    copy.write_row((asset_id, "test-64", Vector(vector).to_text()))
            # The small owner sees user 0's timeline as a partner; user 1 shares without "in timeline".
            immich_rows.share_partner(conn, users[0], small, in_timeline=True)
            immich_rows.share_partner(conn, users[1], small, in_timeline=False)
            conn.execute("ANALYZE")
        yield {
            "url": url,
            "users": users,
            "small": small,
            "ids": ids,
            "owners": owners,
            "states": states,
            "vectors": vectors,
        }


def visible_mask(lib, user: str, include_locked: bool = False) -> np.ndarray:
    partners = {lib["users"][0]} if user == lib["small"] else set()
    mask = []
    for owner, (visibility, trashed) in zip(lib["owners"], lib["states"], strict=True):
        if trashed:
            mask.append(False)
        elif owner == user:
            mask.append(visibility in ("timeline", "archive") or (include_locked and visibility == "locked"))
        else:
            mask.append(owner in partners and visibility == "timeline")
    return np.asarray(mask)


def exact_top(lib, query: np.ndarray, user: str, k: int = K, include_locked: bool = False) -> list[str]:
    mask = visible_mask(lib, user, include_locked)
    scores = lib["vectors"] @ query
    scores[~mask] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return [lib["ids"][i] for i in order if mask[i]]


def search_clip(lib, query, user, k=K, exact_limit=10000, include_locked=False, offset=0) -> list[str]:
    with psycopg.connect(lib["url"]) as conn:
        register_vector(conn)
        rows = conn.execute(
            "SELECT asset_id FROM immich_search.search_clip_v3(%s, %s, %s, %s, %s, %s)",
            (Vector(query), user, k, offset, include_locked, exact_limit),
        ).fetchall()
    return [str(r[0]) for r in rows]


def queries(n: int = 20) -> np.ndarray:
    return unit_rows(np.random.default_rng(11), n)


def recall_at_k(lib, user: str, exact_limit: int) -> float:
    recalls = []
    for query in queries():
        expected = exact_top(lib, query, user)
        got = search_clip(lib, query, user, exact_limit=exact_limit)
        assert len(got) == len(expected)
        recalls.append(len(set(got) & set(expected)) / len(expected))
    return float(np.mean(recalls))


def test_small_owner_gets_every_true_neighbour_from_the_exact_scan(library):
    """The small owner: 15 assets of their own plus a partner's timeline, among 12,000 others."""
    for query in queries():
        expected = exact_top(library, query, library["small"])
        assert search_clip(library, query, library["small"]) == expected


def test_small_owner_keeps_recall_through_the_index(library):
    # exact_limit=0 forces the index path: iterative scans (pgvector 0.8) or the exact fallback (0.6).
    assert recall_at_k(library, library["small"], exact_limit=0) >= 0.95


def test_large_owner_through_the_index_keeps_recall(library):
    assert recall_at_k(library, library["users"][5], exact_limit=0) >= 0.95


def test_visibility_holds_in_every_path(library):
    small, big = library["small"], library["users"][0]
    for exact_limit in (10000, 0):
        for user, include_locked in ((small, False), (big, False), (big, True)):
            allowed = {library["ids"][i] for i in np.flatnonzero(visible_mask(library, user, include_locked))}
            for query in queries(5):
                got = search_clip(library, query, user, k=50, exact_limit=exact_limit, include_locked=include_locked)
                assert got and set(got) <= allowed


def test_pages_follow_each_other(library):
    user = library["users"][3]
    query = queries(1)[0]
    whole = search_clip(library, query, user, k=30)
    pages = [search_clip(library, query, user, k=10, offset=offset) for offset in (0, 10, 20)]
    assert [a for page in pages for a in page] == whole


def test_null_vector_and_empty_requests_return_nothing(library):
    with psycopg.connect(library["url"]) as conn:
        rows = conn.execute("SELECT * FROM immich_search.search_clip_v3(NULL, %s)", (library["small"],)).fetchall()
    assert rows == []
    assert search_clip(library, queries(1)[0], library["small"], k=0) == []
    assert search_clip(library, queries(1)[0], str(uuid.uuid4())) == [], "an unknown user sees nothing"


def test_exact_limit_setting_is_the_default_of_the_argument(library):
    """SET immich_search.exact_limit moves the switch between exact and index search for a session."""
    query = Vector(queries(1)[0])
    with psycopg.connect(library["url"]) as conn:
        register_vector(conn)
        sql = "SELECT asset_id FROM immich_search.search_clip_v3(%s, %s, 10)"
        default = conn.execute(sql, (query, library["small"])).fetchall()
        conn.execute("SET immich_search.exact_limit = 0")
        via_index = conn.execute(sql, (query, library["small"])).fetchall()
        explicit = conn.execute(
            "SELECT asset_id FROM immich_search.search_clip_v3(%s, %s, 10, 0, false, 0)", (query, library["small"])
        ).fetchall()
    assert len(default) == len(via_index) == K and via_index == explicit
