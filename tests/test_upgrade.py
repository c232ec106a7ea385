"""Upgrading a database that holds data, from the first released schema (revision 0001) to head.

Users run `immich-search migrate` at every container start; an upgrade must keep every OCR row, job and
cursor, and the sync must carry on where it stopped (no repeated work).
"""

from __future__ import annotations

import hashlib

import psycopg

from immich_search import immich_rows, migrate
from immich_search.db import open_pool
from immich_search.ocr_engine import OcrLine
from immich_search.sync.discovery import discover
from immich_search.sync.pipeline import ocr_row

FIRST_RELEASE = "0001"


def snapshot(conn: psycopg.Connection) -> dict:
    return {
        "ocr": conn.execute(
            "SELECT asset_id, source, model, lines, text, search_vector::text FROM immich_search.ocr ORDER BY 1"
        ).fetchall(),
        "job": conn.execute(
            "SELECT asset_id, task, state, attempts, last_error, preview_update_id FROM immich_search.job ORDER BY 1, 2"
        ).fetchall(),
        "cursor": conn.execute("SELECT name, update_id FROM immich_search.sync_cursor ORDER BY 1").fetchall(),
        "setting": conn.execute("SELECT key, value FROM immich_search.setting ORDER BY 1").fetchall(),
    }


def test_upgrade_from_first_release_keeps_data(immich_db):
    migrate.upgrade(immich_db, FIRST_RELEASE)
    assert migrate.current_revision(immich_db) == FIRST_RELEASE
    with psycopg.connect(immich_db) as conn:
        user = immich_rows.upsert_user(conn, "up@example.com")
        assets = []
        for i, text in enumerate(["增值税电子普通发票", "Summe EUR 19,90", "no preview yet"]):
            asset = immich_rows.insert_asset(
                conn, user, f"/data/{i}.jpg", f"{i}.jpg", hashlib.sha1(bytes([i])).digest()
            )
            assets.append(asset)
            immich_rows.insert_preview(conn, asset, f"/data/thumbs/{i}.jpeg")
            if i < 2:
                line = OcrLine(text, 0.9, (0.1, 0.1, 0.9, 0.1, 0.9, 0.2, 0.1, 0.2))
                # The row as 0001's sync wrote it (no engine column before revision 0007).
                conn.execute(
                    "INSERT INTO immich_search.ocr (asset_id, source, model, lines, text, search_vector, "
                    "tokenizer_version) VALUES (%(asset_id)s, %(source)s, %(model)s, %(lines)s, %(text)s, "
                    "%(search_vector)s::tsvector, %(tokenizer_version)s)",
                    ocr_row(str(asset), [line], "rapidocr 1.4.4 (PP-OCRv4)"),
                )
        # What a 0001 sync leaves behind: done jobs, a failed one with its reason, both cursors.
        previews = {str(a): u for a, u in conn.execute('SELECT "assetId", "updateId" FROM public.asset_file')}
        for asset, state, error in zip(
            assets, ["done", "done", "failed"], [None, None, "preview file not found"], strict=True
        ):
            conn.execute(
                "INSERT INTO immich_search.job (asset_id, task, state, attempts, last_error, preview_update_id) "
                "VALUES (%s, 'ocr', %s, 1, %s, %s)",
                (asset, state, error, previews[asset]),
            )
        for name, table in (("asset", "asset"), ("asset_file_preview", "asset_file")):
            conn.execute(
                "INSERT INTO immich_search.sync_cursor (name, update_id) "
                f'SELECT %s, "updateId" FROM public.{table} ORDER BY "updateId" DESC LIMIT 1',
                (name,),
            )
        before = snapshot(conn)

    migrate.upgrade(immich_db)
    assert migrate.current_revision(immich_db) == migrate.head_revision()
    with psycopg.connect(immich_db) as conn:
        after = snapshot(conn)
        # Lines and text are kept; the search vector may be rebuilt by a newer tokenizer.
        assert [r[:5] for r in after["ocr"]] == [r[:5] for r in before["ocr"]]
        assert after["job"] == before["job"]
        assert after["cursor"] == before["cursor"]
        assert set(before["setting"]) <= set(after["setting"])
        found = conn.execute("SELECT original_file_name FROM immich_search.search_ocr('发票', %s)", (user,)).fetchall()
        assert found == [("0.jpg",)]
    # The OCR cursors carry on: nothing is requeued for the OCR task.
    with open_pool(immich_db) as pool:
        assert discover(pool, ["ocr"]) == 0

    # And back: a downgrade to the first release keeps its data too.
    migrate.downgrade(immich_db, FIRST_RELEASE)
    with psycopg.connect(immich_db) as conn:
        again = snapshot(conn)
    assert again["job"] == before["job"] and again["cursor"] == before["cursor"]
    assert [r[:5] for r in again["ocr"]] == [r[:5] for r in before["ocr"]]
