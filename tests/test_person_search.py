"""`person:张三` in search (issue 17, point 4) on a real PostgreSQL holding Immich's schema, people and faces
inserted the way Immich's face jobs write them (tests/test_people.py does the same): the parser and its SQL
twin, the CLI's Python path against psql's search/search_ocr (same hits), two people (AND), an unknown name,
a hidden person, a partner's photo, paging, `ocr:`/`desc:`/plain/`clip:` together with person terms, and
serve with person terms and Immich's personIds."""

from __future__ import annotations

import contextlib
import json
import uuid

import httpx
import psycopg
import pytest
from click.testing import CliRunner
from pgvector import Vector
from pgvector.psycopg import register_vector

from immich_search import immich_rows
from immich_search.cli import cli
from immich_search.db import open_pool
from immich_search.ranking.hybrid_search import search, search_query
from immich_search.ranking.ocr_query import build_ocr_query, jieba_segmenter
from immich_search.ranking.ocr_search import search_ocr
from immich_search.ranking.query_language import Mode, parse
from immich_search.serve.app import ServeConfig, create_app
from immich_search.serve.pages import PageRequest, ocr_page
from immich_search.serve.searchers import hybrid_searcher, ocr_searcher
from immich_search.sqlfiles import query
from immich_search.sync.describe_task import description_row
from immich_search.sync.vision import Description
from tests.conftest import scratch_database
from tests.fake_immich import FakeImmich, add_asset, add_four_users

FACE = [1.0] + [0.0] * 511  # the embedding does not matter here: only which person a face belongs to
DIM = 4
"""Dimension of the vectors of the test's CLIP branch (the vectors are given, not computed by a model)."""
PAGED = 12
"""Photos of 张三 with 收据 in them, for paging."""


def photo_vector(index: int) -> list[float]:
    """A unit vector per photo index, the query vector being closest to index 0."""
    return [1.0, index / 10.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def library(server, migrated_template):
    """alice's people 张三, Anna Li and the hidden Hidden Harry; bob (a partner sharing his timeline with alice)
    has a person also named 张三. OCR text, a description and CLIP vectors on some photos."""
    with scratch_database(server, migrated_template) as url, psycopg.connect(url, autocommit=True) as conn:
        users = add_four_users(conn)
        alice, bob = users["alice"], users["bob"]
        zhang = immich_rows.insert_person(conn, alice, "张三")
        anna = immich_rows.insert_person(conn, alice, "Anna Li")
        harry = immich_rows.insert_person(conn, alice, "Hidden Harry", hidden=True)
        bob_zhang = immich_rows.insert_person(conn, bob, "张三")
        ids: dict[str, str] = {}

        def photo(name, owner, lines, age, people=(), **options):
            ids[name] = add_asset(conn, owner, name, lines, age_days=age, **options)
            for person in people:
                immich_rows.insert_face(conn, ids[name], FACE, person_id=person)
            return ids[name]

        photo("zs-invoice.jpg", alice, ["发票 金额 100"], 1, [zhang])
        photo("zs-anna-invoice.jpg", alice, ["发票"], 2, [zhang, anna])
        photo("anna-invoice.jpg", alice, ["发票"], 3, [anna])
        photo("invoice.jpg", alice, ["发票"], 4)
        photo("zs-beach.jpg", alice, ["海边"], 5, [zhang])
        photo("harry-invoice.jpg", alice, ["发票"], 6, [harry])
        photo("zs-trashed.jpg", alice, ["发票"], 7, [zhang], trashed=True)
        photo("zs-locked.jpg", alice, ["发票"], 8, [zhang], visibility="locked")
        # A deleted and an invisible face do not count (Immich's hasPeople).
        ids["zs-deleted-face.jpg"] = add_asset(conn, alice, "zs-deleted-face.jpg", ["发票"], age_days=9)
        immich_rows.insert_face(conn, ids["zs-deleted-face.jpg"], FACE, person_id=zhang, deleted=True)
        ids["zs-invisible-face.jpg"] = add_asset(conn, alice, "zs-invisible-face.jpg", ["发票"], age_days=10)
        immich_rows.insert_face(conn, ids["zs-invisible-face.jpg"], FACE, person_id=zhang, visible=False)
        for i in range(PAGED):
            photo(f"zs-receipt-{i:02d}.jpg", alice, ["收据"], 20 + i, [zhang])
        photo("receipt.jpg", alice, ["收据"], 19)
        photo("bob-zs-invoice.jpg", bob, ["发票"], 0.5, [bob_zhang])
        conn.execute(
            query("upsert_description"),
            description_row(ids["zs-beach.jpg"], Description("孩子在海边放风筝", "stand-in", 0.1), "test-vision"),
        )
        conn.execute(
            query("upsert_description"),
            description_row(ids["invoice.jpg"], Description("孩子在海边放风筝", "stand-in", 0.1), "test-vision"),
        )
        conn.execute("SELECT immich_search.clip_configure_v1('test-clip', %s)", (DIM,))
        register_vector(conn)
        for index, name in enumerate(["invoice.jpg", "zs-beach.jpg", "zs-invoice.jpg", "anna-invoice.jpg"]):
            conn.execute(
                query("upsert_clip"),
                {"asset_id": ids[name], "model": "test-clip", "embedding": Vector(photo_vector(index))},
            )
        people = {"zhang": zhang, "anna": anna, "harry": harry, "bob_zhang": bob_zhang}
        pool = open_pool(url)
        yield {"url": url, "users": users, "ids": ids, "people": people, "pool": pool}
        pool.close()


def names(library, hits) -> list[str]:
    by_id = {asset_id: name for name, asset_id in library["ids"].items()}
    return [by_id[str(getattr(hit, "asset_id", hit))] for hit in hits]


def psql(library, text: str, *, user: str = "alice", k: int = 10, offset: int = 0, vector=None) -> list[str]:
    """psql's immich_search.search(query, vector, user, k, offset): the file names, best first."""
    with psycopg.connect(library["url"]) as conn:
        register_vector(conn)
        rows = conn.execute(
            "SELECT asset_id::text FROM immich_search.search(%s, %s::vector, %s::uuid, %s, %s)",
            (text, Vector(vector) if vector else None, library["users"][user], k, offset),
        ).fetchall()
    return names(library, [row[0] for row in rows])


def psql_ocr(library, text: str, *, user: str = "alice", k: int = 10, offset: int = 0) -> list[str]:
    with psycopg.connect(library["url"]) as conn:
        rows = conn.execute(
            "SELECT asset_id::text FROM immich_search.search_ocr(%s, %s::uuid, %s, %s)",
            (text, library["users"][user], k, offset),
        ).fetchall()
    return names(library, [row[0] for row in rows])


def cli_json(library, text: str, *args: str, user: str = "alice@example.com"):
    result = CliRunner().invoke(
        cli, ["--database-url", library["url"], "search", text, "--user", user, "--json", "--no-clip", *args]
    )
    assert "Traceback" not in result.output
    return result


def cli_names(library, text: str, *args: str, user: str = "alice@example.com") -> list[str]:
    result = cli_json(library, text, *args, user=user)
    assert result.exit_code == 0, result.output
    return names(library, [hit["asset_id"] for hit in json.loads(result.stdout)])


# ---------------------------------------------------------------------------------------------------------
# the query language and its SQL twin

PARSE_CASES = [
    ("person:张三 ocr:发票", ("张三",), Mode.OCR, ["发票"]),
    ("ocr:发票 person:张三", ("张三",), Mode.OCR, ["发票"]),
    ("ocr:person:张三", ("张三",), Mode.OCR, []),
    ('desc:风筝 person:"Anna Li" PERSON:张三', ("Anna Li", "张三"), Mode.DESC, ["风筝"]),
    ("person:“Anna Li” 海边", ("Anna Li",), Mode.HYBRID, ["海边"]),
    ("-person:张三 发票", (), Mode.HYBRID, ["person:张三", "发票"]),
    ('"with person:张三 inside"', (), Mode.HYBRID, ["with person:张三 inside"]),
    ("person: 发票", (), Mode.HYBRID, ["person:", "发票"]),
    ('person:"" 发票', (), Mode.HYBRID, ["发票"]),
]


@pytest.mark.parametrize(("text", "people", "mode", "terms"), PARSE_CASES, ids=[c[0] for c in PARSE_CASES])
def test_person_terms_are_read_anywhere_and_leave_the_rest_as_it_was(text, people, mode, terms):
    parsed = parse(text)
    assert parsed.people == people
    assert parsed.mode is mode
    assert [term.text for term in parsed.terms] == terms
    assert parsed.has_text == bool(terms)


@pytest.mark.parametrize("text", [c[0] for c in PARSE_CASES] + ['x\tperson:"a"b -"c"person:d', "person:张三  "])
def test_the_sql_twin_reads_person_terms_as_python_does(library, text):
    """person_terms_v1 against split_people/parse, and ocr_tsquery (v5) against build_ocr_query(parse(...))."""
    parsed = parse(text)
    with psycopg.connect(library["url"]) as conn:
        names_, has_text = conn.execute(
            "SELECT names, has_text FROM immich_search.person_terms_v1(%s)", (text,)
        ).fetchone()
        loose, strict = conn.execute(
            "SELECT immich_search.ocr_tsquery(%(q)s, false)::text, immich_search.ocr_tsquery(%(q)s, true)::text",
            {"q": text},
        ).fetchone()
        built = build_ocr_query(parse(text), jieba_segmenter())
        expected = [
            conn.execute("SELECT %s::tsquery::text", (literal,)).fetchone()[0] if literal else None
            for literal in (built.loose, built.strict)
        ]
    assert (tuple(names_), has_text) == (parsed.people, parsed.has_text)
    if not text.lstrip().lower().startswith("desc"):  # ocr_tsquery leaves desc: to search (as before)
        assert [loose, strict] == expected


# ---------------------------------------------------------------------------------------------------------
# the CLI's Python path and psql give the same hits


SAME_HITS = [
    ("ocr:发票 person:张三", ["zs-invoice.jpg", "zs-anna-invoice.jpg"]),
    ("person:张三 ocr:发票", ["zs-invoice.jpg", "zs-anna-invoice.jpg"]),
    ('ocr:发票 person:张三 person:"anna li"', ["zs-anna-invoice.jpg"]),
    ("ocr:发票 person:ANNA\u3000LI", []),  # an unquoted name is one word: "ANNA", nobody
    ('ocr:发票 person:"ＡＮＮＡ LI"', ["zs-anna-invoice.jpg", "anna-invoice.jpg"]),  # NFKC, any case
    ('ocr:发票 person:"Hidden Harry"', ["harry-invoice.jpg"]),  # hidden people still filter
    ("ocr:发票 -金额 person:张三", ["zs-anna-invoice.jpg"]),
    ("desc:风筝 person:张三", ["zs-beach.jpg"]),
    ("desc:风筝", ["invoice.jpg", "zs-beach.jpg"]),
    ("风筝 person:张三", ["zs-beach.jpg"]),  # plain without a CLIP model: OCR text and descriptions
    ("发票 person:张三", ["zs-invoice.jpg", "zs-anna-invoice.jpg"]),
    ("ocr:发票 person:nobody", []),
]


@pytest.mark.parametrize(("text", "expected"), SAME_HITS, ids=[c[0] for c in SAME_HITS])
def test_cli_and_psql_find_the_same_photos(library, text, expected):
    assert sorted(psql(library, text)) == sorted(expected)
    assert psql(library, text) == names(library, search_query(library["pool"], text, library["users"]["alice"]))
    assert cli_names(library, text) == psql(library, text)
    assert cli_names(library, text, "--tokenizer", "sql") == psql(library, text)
    if text.startswith("ocr:"):
        assert psql_ocr(library, text) == psql(library, text)


def test_person_alone_lists_their_photos_newest_first(library):
    expected = ["zs-invoice.jpg", "zs-anna-invoice.jpg", "zs-beach.jpg", *[f"zs-receipt-{i:02d}.jpg" for i in range(5)]]
    for text in ("person:张三", "ocr:person:张三", "clip: person:张三", "desc:person:张三"):
        assert psql(library, text, k=8) == expected, text
        assert cli_names(library, text, "--limit", "8") == expected, text
        assert cli_names(library, text, "--limit", "8", "--tokenizer", "sql") == expected, text
    assert psql_ocr(library, "person:张三", k=8) == expected
    # Never a trashed or locked photo, nor one whose face is deleted or invisible; the same order as photos_of.
    every = psql(library, "person:张三", k=100)
    assert len(every) == 3 + PAGED and not {n for n in every if "trashed" in n or "locked" in n or "face" in n}
    with psycopg.connect(library["url"]) as conn:
        rows = conn.execute(
            "SELECT asset_id::text FROM immich_search.photos_of(%s, %s, 100)",
            (library["people"]["zhang"], library["users"]["alice"]),
        ).fetchall()
    assert names(library, [row[0] for row in rows]) == every
    assert psql(library, 'person:张三 person:"anna li"') == ["zs-anna-invoice.jpg"]
    # The locked folder when asked for.
    with open_pool(library["url"]) as pool:
        locked = search_ocr(pool, "person:张三", library["users"]["alice"], limit=100, include_locked=True)
    assert "zs-locked.jpg" in names(library, locked)


def test_paging_with_a_person_filter(library):
    """The filter is inside the ranking: every page is full, pages do not overlap, receipt.jpg never shows."""
    pages_sql = [psql(library, "ocr:收据 person:张三", k=5, offset=offset) for offset in (0, 5, 10)]
    assert [len(page) for page in pages_sql] == [5, 5, PAGED - 10]
    seen = [name for page in pages_sql for name in page]
    assert sorted(seen) == [f"zs-receipt-{i:02d}.jpg" for i in range(PAGED)]
    pages_cli = [cli_names(library, "ocr:收据 person:张三", "--limit", "5", "--offset", str(o)) for o in (0, 5, 10)]
    assert pages_cli == pages_sql
    listed = [psql(library, "person:张三", k=4, offset=offset) for offset in range(0, 16, 4)]
    assert [name for page in listed for name in page] == psql(library, "person:张三", k=100)


def test_partners_photos_are_filtered_by_the_callers_people_only(library):
    """As Immich's search: a partner's photo shows the partner's people, whom the caller's names never match."""
    assert "bob-zs-invoice.jpg" in psql(library, "ocr:发票"), "bob's timeline is alice's to search"
    assert "bob-zs-invoice.jpg" not in psql(library, "ocr:发票 person:张三"), "bob's 张三 is not alice's 张三"
    assert psql(library, "ocr:发票 person:张三", user="bob") == ["bob-zs-invoice.jpg"]
    assert cli_names(library, "person:张三", user="bob@example.com") == ["bob-zs-invoice.jpg"]


def test_an_unknown_name_gives_no_results_and_a_hint(library):
    result = cli_json(library, "ocr:发票 person:王五")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == []
    assert "no person named 王五" in result.stderr and "immich-search people" in result.stderr
    table = CliRunner().invoke(
        cli,
        [
            "--database-url",
            library["url"],
            "search",
            "person:王五 person:张三",
            "--no-clip",
            "--user",
            "alice@example.com",
        ],
    )
    assert table.exit_code == 0 and "Traceback" not in table.output
    assert "no person named 王五 " in table.output and "no matches" in table.output, "张三 is known: not named"
    assert psql(library, "person:王五") == [] and psql_ocr(library, "person:王五 发票") == []


def test_clip_branch_is_restricted_too(library):
    """A clip: query with a person filter ranks that person's photos only (exactly, by the vector), in psql and
    in the Python path (the vector given; the CLIP model itself is tests/test_clip_search.py's)."""
    query_vector = photo_vector(0)
    assert psql(library, "clip:x", vector=query_vector) == [
        "invoice.jpg",
        "zs-beach.jpg",
        "zs-invoice.jpg",
        "anna-invoice.jpg",
    ]
    assert psql(library, "clip:x person:张三", vector=query_vector) == ["zs-beach.jpg", "zs-invoice.jpg"]
    # A plain query fuses the two branches, both restricted: 收据 matches no photo with a vector.
    # RRF (k = 60): zs-invoice is in both branches (text 2, its longer text ranking lower; vector 2), zs-anna text 1,
    # zs-beach vector 1 (a tie, the text rank first); nothing of anyone else.
    fused = psql(library, "发票 person:张三", vector=query_vector)
    assert fused == ["zs-invoice.jpg", "zs-anna-invoice.jpg", "zs-beach.jpg"]

    class GivenVector:
        """The text encoder's output fixed by the test: what matters here is the SQL branch it feeds."""

        name = "test-clip"

        def encode_texts(self, texts):
            import numpy as np

            return np.asarray([query_vector] * len(texts), dtype=np.float32)

    hits = search(library["pool"], "clip:x person:张三", library["users"]["alice"], encoder=GivenVector())
    assert names(library, hits) == ["zs-beach.jpg", "zs-invoice.jpg"]
    hybrid = search(library["pool"], "发票 person:张三", library["users"]["alice"], encoder=GivenVector())
    assert names(library, hybrid) == fused


# ---------------------------------------------------------------------------------------------------------
# serve


def test_serve_pages_honour_person_terms_and_person_ids(library):
    """The database page (Immich v3.1): person terms and personIds in the ranking, alone a listing."""
    alice = library["users"]["alice"]

    def page(text, **filters):
        items, _ = ocr_page(library["pool"], text, PageRequest(alice, 1, 50, False, filters))
        return names(library, [item["id"] for item in items])

    anna = library["people"]["anna"]
    assert page("ocr:发票 person:张三") == psql(library, "ocr:发票 person:张三")
    assert page("ocr:发票", personIds=[anna]) == psql(library, 'ocr:发票 person:"anna li"')
    assert sorted(page("ocr:发票", personIds=[anna])) == ["anna-invoice.jpg", "zs-anna-invoice.jpg"]
    assert page("ocr:发票 person:张三", personIds=[anna]) == ["zs-anna-invoice.jpg"]
    assert page("person:张三")[:3] == ["zs-invoice.jpg", "zs-anna-invoice.jpg", "zs-beach.jpg"]
    receipts = page("ocr:收据", personIds=[library["people"]["zhang"]])
    assert sorted(receipts) == [f"zs-receipt-{i:02d}.jpg" for i in range(PAGED)]
    # Paging: size 5 pages are full and disjoint.
    first, has_next = ocr_page(library["pool"], "ocr:收据 person:张三", PageRequest(alice, 1, 5, False, {}))
    second, _ = ocr_page(library["pool"], "ocr:收据 person:张三", PageRequest(alice, 2, 5, False, {}))
    assert has_next and len(first) == len(second) == 5 and not {i["id"] for i in first} & {i["id"] for i in second}


@contextlib.asynccontextmanager
async def serving(library, fake):
    app = create_app(
        ServeConfig(immich_url="http://immich.test"),
        ocr_searcher=ocr_searcher(library["pool"]),
        plain_searcher=hybrid_searcher(library["pool"], search_query),
        transport=httpx.ASGITransport(app=fake.app),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve.test") as client:
        yield client
    await app.state.service.aclose()


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_serve_answers_person_queries_and_honours_person_ids(library):
    """Through serve (the fake Immich: the ranking's searchers, items from GET /api/assets/{id}): person terms in
    the search bar's query, and Immich's personIds on the searches serve answers itself (ocr: and plain)."""
    fake = FakeImmich().load(library["url"])
    token = fake.login(library["users"]["alice"])
    headers = {"cookie": f"immich_access_token={token}"}
    zhang, anna = library["people"]["zhang"], library["people"]["anna"]

    async def ask(body):
        async with serving(library, fake) as client:
            response = await client.post("/api/search/smart", json=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers.get("x-immich-search"), "answered by serve, not passed through"
        return names(library, [item["id"] for item in response.json()["assets"]["items"]])

    ranked = psql(library, "ocr:发票 person:张三")
    assert sorted(ranked) == ["zs-anna-invoice.jpg", "zs-invoice.jpg"]
    assert await ask({"query": "ocr:发票 person:张三"}) == ranked
    assert await ask({"query": "person:张三 ocr:发票"}) == ranked
    assert await ask({"query": "ocr:发票", "personIds": [anna]}) == psql(library, 'ocr:发票 person:"Anna Li"')
    assert await ask({"query": "ocr:发票", "personIds": [zhang, anna]}) == ["zs-anna-invoice.jpg"]
    assert await ask({"query": "ocr:发票", "personIds": [str(uuid.uuid4())]}) == []
    assert await ask({"query": "发票", "personIds": [zhang]}) == psql(library, "发票 person:张三")
    assert await ask({"query": "风筝 person:张三"}) == ["zs-beach.jpg"]
    assert (await ask({"query": "person:张三", "size": 3})) == ["zs-invoice.jpg", "zs-anna-invoice.jpg", "zs-beach.jpg"]
    paged = [await ask({"query": "ocr:收据", "personIds": [zhang], "size": 5, "page": page}) for page in (1, 2, 3)]
    assert sorted(name for page in paged for name in page) == [f"zs-receipt-{i:02d}.jpg" for i in range(PAGED)]
    assert fake.smart_requests == [], "Immich answered none of them"
