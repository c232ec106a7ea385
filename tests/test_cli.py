"""The command line: every command on a real database, clear one-line errors, documented commands."""

from __future__ import annotations

import json

import click
import psycopg
import pytest
from click.testing import CliRunner

from immich_search import migrate as migrations
from immich_search.cli import cli
from immich_search.config import IMMICH_DB_DEFAULTS, database_url_from_env
from immich_search.errors import ConfigError
from tests.fake_immich import add_asset, add_user

UNREACHABLE = "postgresql://x@127.0.0.1:1/db"
ENV_VARS = [*IMMICH_DB_DEFAULTS, "DB_URL", "IMMICH_SEARCH_DATABASE_URL", "IMMICH_SEARCH_EMBEDDED"]


@pytest.fixture
def runner(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COLUMNS", "250")  # rich tables: no wrapping inside cells
    return CliRunner()


def invoke(runner: CliRunner, *args: str):
    return runner.invoke(cli, list(args), catch_exceptions=True)


def assert_clean_error(result, *fragments: str) -> None:
    """A non-zero exit with a message and no traceback (a ClickException or UsageError)."""
    assert result.exit_code != 0, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


# ---------------------------------------------------------------------------------------------------------
# migrate and doctor


def test_migrate_is_idempotent(runner, immich_db):
    first = invoke(runner, "--database-url", immich_db, "migrate")
    assert first.exit_code == 0, first.output
    assert f"at revision {migrations.head_revision()}" in first.output
    second = invoke(runner, "--database-url", immich_db, "migrate")
    assert second.exit_code == 0, second.output
    assert migrations.current_revision(immich_db) == migrations.head_revision()


def test_migrate_downgrade_base(runner, db):
    result = invoke(runner, "--database-url", db, "migrate", "--downgrade", "base")
    assert result.exit_code == 0, result.output
    assert migrations.current_revision(db) is None


def test_doctor_ok_on_a_migrated_database(runner, db):
    result = invoke(runner, "--database-url", db, "doctor")
    assert result.exit_code == 0, result.output
    assert "migrations" in result.output
    assert "fail" not in result.output
    quiet = invoke(runner, "--database-url", db, "doctor", "--quiet")
    assert quiet.exit_code == 0 and quiet.output == ""


def test_doctor_fails_on_an_unmigrated_database(runner, immich_db):
    result = invoke(runner, "--database-url", immich_db, "doctor")
    assert result.exit_code == 1, result.output
    assert "run: immich-search migrate" in result.output
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------------------------------------
# search


@pytest.fixture
def searchable(db):
    with psycopg.connect(db) as conn:
        alice = add_user(conn, "alice@example.com")
        add_asset(conn, alice, "receipt.jpg", ["Delphin Apotheke", "Summe EUR 19,90"], age_days=1)
        add_asset(conn, alice, "invoice.jpg", ["增值税电子普通发票"], age_days=2)
    return db


def test_search_json(runner, searchable):
    result = invoke(runner, "--database-url", searchable, "search", "ocr:summe", "--json")
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)
    assert isinstance(hits, list) and len(hits) == 1
    (hit,) = hits
    assert set(hit) == {"asset_id", "original_file_name", "score", "snippet"}
    assert hit["original_file_name"] == "receipt.jpg"
    assert hit["snippet"] == "Summe EUR 19,90"
    assert 0 < hit["score"] <= 1

    result = invoke(runner, "--database-url", searchable, "search", "ocr:发票", "--json", "--tokenizer", "sql")
    assert result.exit_code == 0, result.output
    assert [h["original_file_name"] for h in json.loads(result.output)] == ["invoice.jpg"]
    assert "增值税电子普通发票" in result.output, "JSON keeps Chinese readable"

    result = invoke(runner, "--database-url", searchable, "search", "nothing-like-this", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    assert "semantic search is off" in result.stderr, "a plain query says why CLIP is not used"


def test_search_table(runner, searchable):
    result = invoke(runner, "--database-url", searchable, "search", "ocr:summe", "--user", "ALICE@example.com")
    assert result.exit_code == 0, result.output
    assert "receipt.jpg" in result.output and "Summe EUR 19,90" in result.output
    none = invoke(runner, "--database-url", searchable, "search", "zzzz")
    assert none.exit_code == 0 and "no matches" in none.output


def test_search_unknown_user(runner, searchable):
    result = invoke(runner, "--database-url", searchable, "search", "summe", "--user", "nobody@example.com")
    assert_clean_error(result, "no Immich user", "nobody@example.com")


def test_search_needs_user_when_several(runner, searchable):
    with psycopg.connect(searchable) as conn:
        add_user(conn, "bob@example.com")
    result = invoke(runner, "--database-url", searchable, "search", "summe")
    assert_clean_error(result, "--user")


def test_search_on_unmigrated_database(runner, immich_db):
    result = invoke(runner, "--database-url", immich_db, "search", "summe")
    assert_clean_error(result, "immich-search migrate")


# ---------------------------------------------------------------------------------------------------------
# configuration errors


@pytest.mark.parametrize(
    "args",
    [
        ["migrate"],
        ["doctor"],
        ["search", "summe"],
        ["sync", "--media-root", "."],
    ],
)
def test_unreachable_database(runner, args):
    result = invoke(runner, "--database-url", UNREACHABLE, *args)
    assert_clean_error(result, "cannot connect to the database", "x@127.0.0.1:1/db")
    message = [line for line in result.output.splitlines() if line.strip()]
    assert len(message) == 1, result.output


def test_unreachable_database_message_hides_the_password(runner):
    result = invoke(runner, "--database-url", "postgresql://x:hunter2@127.0.0.1:1/db", "doctor")
    assert_clean_error(result, "cannot connect to the database x@127.0.0.1:1/db")
    assert "hunter2" not in result.output


@pytest.mark.parametrize("args", [["migrate"], ["doctor"], ["search", "summe"], ["sync", "--media-root", "."]])
def test_no_database_configured(runner, args):
    result = invoke(runner, *args)
    assert_clean_error(result, "no database given", "--database-url", "DB_HOSTNAME")


def test_database_from_immich_env(runner, monkeypatch, db):
    monkeypatch.setenv("DB_URL", db)
    result = invoke(runner, "doctor", "--quiet")
    assert result.exit_code == 0, result.output


def test_sync_with_missing_media_root(runner, db):
    result = invoke(runner, "--database-url", db, "sync", "--media-root", "/nonexistent")
    assert_clean_error(result, "/nonexistent", "--media-root")


def test_database_url_and_embedded_conflict(runner, tmp_path):
    result = invoke(runner, "--database-url", UNREACHABLE, "--embedded", str(tmp_path), "doctor")
    assert_clean_error(result, "not both")


# ---------------------------------------------------------------------------------------------------------
# documentation: every command has help text with an example (sqlite-utils' convention)


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from all_commands(command, (*prefix, name))


COMMANDS = [path for path, _ in all_commands(cli)]


def test_commands_found():
    assert {("migrate",), ("doctor",), ("sync",), ("search",), ("demo",)} <= set(COMMANDS)


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_has_help_with_an_example(runner, path):
    result = invoke(runner, *path, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output, f"`immich-search {' '.join(path)} --help` shows no example"
    assert "immich-search " + path[0] in result.output
    short = invoke(runner, *path, "-h")
    assert short.exit_code == 0 and short.output == result.output


def test_top_level_help_and_version(runner):
    result = invoke(runner, "--help")
    assert result.exit_code == 0 and "Example" in result.output
    version = invoke(runner, "--version")
    assert version.exit_code == 0 and "immich-search" in version.output


# ---------------------------------------------------------------------------------------------------------
# database_url_from_env


def test_env_db_url_wins():
    env = {"DB_URL": "postgresql://u:p@h:1/d", "DB_HOSTNAME": "other", "DB_PASSWORD": "x"}
    assert database_url_from_env(env) == "postgresql://u:p@h:1/d"


def test_env_nothing_set():
    assert database_url_from_env({}) is None
    assert database_url_from_env({"DB_URL": "", "DB_HOSTNAME": ""}) is None
    assert database_url_from_env({"HOME": "/root"}) is None


def test_env_parts_with_immich_defaults():
    assert database_url_from_env({"DB_PASSWORD": "secret"}) == "postgresql://postgres:secret@database:5432/immich"
    assert (
        database_url_from_env(
            {"DB_HOSTNAME": "db.lan", "DB_PORT": "5433", "DB_USERNAME": "immich", "DB_DATABASE_NAME": "photos"}
        )
        == "postgresql://immich:postgres@db.lan:5433/photos"
    )


def test_env_password_is_quoted():
    url = database_url_from_env({"DB_PASSWORD": "p@ss:w/rd?#%", "DB_USERNAME": "me@home"})
    assert url == "postgresql://me%40home:p%40ss%3Aw%2Frd%3F%23%25@database:5432/immich"
    info = psycopg.conninfo.conninfo_to_dict(url)
    assert info["password"] == "p@ss:w/rd?#%" and info["user"] == "me@home"


@pytest.mark.parametrize("port", ["abc", "54 32", "-1", "5432x"])
def test_env_bad_port(port):
    with pytest.raises(ConfigError, match="DB_PORT"):
        database_url_from_env({"DB_PORT": port})
