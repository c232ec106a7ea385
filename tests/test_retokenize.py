"""Re-tokenising stored OCR text after a tokenizer change, without running OCR again."""

from __future__ import annotations

import hashlib
import json
import uuid

import psycopg
import pytest

from immich_search import immich_rows
from immich_search.db import open_pool
from immich_search.demo import IMMICH_MEDIA_LOCATION
from immich_search.sync.pipeline import OcrSync
from immich_search.sync.retokenize import line_texts, retokenize_outdated
from immich_search.sync.sources import MediaFileSource
from immich_search.tokens import TOKENIZER_VERSION, document_tokens, tsvector_literal


def add_row(conn: psycopg.Connection, owner: str, lines: object, version: int, vector: str = "") -> str:
    """An asset and its OCR row as an older sync wrote it: ``lines`` stored, ``vector`` from that tokenizer."""
    asset_id = str(uuid.uuid4())
    immich_rows.insert_asset(
        conn,
        owner,
        f"/data/{asset_id}.jpg",
        f"{asset_id}.jpg",
        hashlib.sha1(asset_id.encode()).digest(),
        asset_id=asset_id,
    )
    conn.execute(
        "INSERT INTO immich_search.ocr (asset_id, source, engine, model, lines, text, search_vector, "
        "tokenizer_version) VALUES (%s, 'rapidocr', 'rapidocr-v4', 'test', %s, '', %s::tsvector, %s)",
        (asset_id, json.dumps(lines), vector, version),
    )
    return asset_id


def stored(conn: psycopg.Connection, asset_id: str) -> tuple[str, int]:
    vector, version = conn.execute(
        "SELECT search_vector::text, tokenizer_version FROM immich_search.ocr WHERE asset_id = %s", (asset_id,)
    ).fetchone()
    return vector, version


def expected(conn: psycopg.Connection, texts: list[str]) -> str:
    return conn.execute("SELECT %s::tsvector::text", (tsvector_literal(document_tokens(texts)),)).fetchone()[0]


@pytest.fixture
def owner(db) -> str:
    with psycopg.connect(db) as conn:
        return immich_rows.upsert_user(conn, "r@example.com")


def test_outdated_rows_are_rebuilt_from_their_lines(db, owner):
    lines = [{"text": "Detmolder StraBe 8", "score": 0.9, "box": [0] * 8}, {"text": "发票", "score": 0.9}]
    with psycopg.connect(db, autocommit=True) as conn:
        old = add_row(conn, owner, lines, TOKENIZER_VERSION - 1, "'detmolder':1 'strabe':2")
        newer = add_row(conn, owner, lines, TOKENIZER_VERSION + 1, "'kept':1")
        current = add_row(conn, owner, lines, TOKENIZER_VERSION, "'kept':1")
    with open_pool(db) as pool:
        assert retokenize_outdated(pool, batch_size=1) == 1
        assert retokenize_outdated(pool) == 0, "nothing left to do"
    with psycopg.connect(db) as conn:
        assert stored(conn, old) == (expected(conn, ["Detmolder StraBe 8", "发票"]), TOKENIZER_VERSION)
        assert stored(conn, newer) == ("'kept':1", TOKENIZER_VERSION + 1), "a newer tokenizer's rows stay"
        assert stored(conn, current) == ("'kept':1", TOKENIZER_VERSION)
        found = conn.execute("SELECT count(*) FROM immich_search.search_ocr('straße', %s)", (owner,)).fetchone()[0]
        assert found == 1, "the rebuilt row has the fuzzy keys that find StraBe"


def test_many_rows_in_batches(db, owner):
    with psycopg.connect(db, autocommit=True) as conn:
        ids = [add_row(conn, owner, [{"text": f"word{i}"}], 1) for i in range(7)]
    with open_pool(db) as pool:
        assert retokenize_outdated(pool, batch_size=3) == 7
    with psycopg.connect(db) as conn:
        for i, asset_id in enumerate(ids):
            assert stored(conn, asset_id) == (expected(conn, [f"word{i}"]), TOKENIZER_VERSION)


def test_malformed_lines_give_fewer_tokens_not_errors(db, owner):
    with psycopg.connect(db, autocommit=True) as conn:
        odd = add_row(conn, owner, [{"text": "ok"}, {"text": 3}, "loose", {"no": "text"}, None], 1)
        not_a_list = add_row(conn, owner, {"text": "x"}, 1)
    with open_pool(db) as pool:
        assert retokenize_outdated(pool) == 2
    with psycopg.connect(db) as conn:
        assert stored(conn, odd) == (expected(conn, ["ok"]), TOKENIZER_VERSION)
        assert stored(conn, not_a_list) == ("", TOKENIZER_VERSION)


def test_rows_held_by_another_worker_are_skipped(db, owner):
    with psycopg.connect(db, autocommit=True) as conn:
        held = add_row(conn, owner, [{"text": "held"}], 1)
        free = add_row(conn, owner, [{"text": "free"}], 1)
    with psycopg.connect(db) as other, open_pool(db) as pool:
        other.execute("SELECT 1 FROM immich_search.ocr WHERE asset_id = %s FOR UPDATE", (held,))
        assert retokenize_outdated(pool) == 1
        other.rollback()
        assert retokenize_outdated(pool) == 1
    with psycopg.connect(db) as conn:
        assert stored(conn, held)[1] == stored(conn, free)[1] == TOKENIZER_VERSION


def test_sync_run_retokenizes_first(db, owner, tmp_path, ocr_engine):
    with psycopg.connect(db, autocommit=True) as conn:
        old = add_row(conn, owner, [{"text": "Cleanhandswithsoap"}], 1)
    with open_pool(db) as pool:
        OcrSync(pool, MediaFileSource(tmp_path, IMMICH_MEDIA_LOCATION), engine=ocr_engine).run_once()
    with psycopg.connect(db) as conn:
        assert stored(conn, old) == (expected(conn, ["Cleanhandswithsoap"]), TOKENIZER_VERSION)


def test_line_texts():
    assert line_texts([{"text": "a"}, {"text": ""}, {"score": 1}, "b", {"text": None}]) == ["a", ""]
    assert line_texts(None) == [] and line_texts({"text": "a"}) == []


def test_batch_size_must_be_positive(db):
    with open_pool(db) as pool, pytest.raises(ValueError, match="batch_size"):
        retokenize_outdated(pool, batch_size=0)
