"""README.md's command table and the CLI agree: every command listed exists, every command is listed, and
every option the table names exists on the command it is written for."""

from __future__ import annotations

import re
from pathlib import Path

import click

from immich_search.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"
OPTION = re.compile(r"(?<![\w-])(--?[a-zA-Z][a-zA-Z0-9-]*)")


def command_rows() -> dict[str, str]:
    """The rows of README's command table: command name -> the rest of the row."""
    text = README.read_text(encoding="utf-8")
    start = text.index("| command | what it does | example |")
    rows: dict[str, str] = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("|"):
            break
        match = re.match(r"\|\s*`([a-z-]+)`\s*\|(.*)", line)
        assert match, f"a command row must start with the command in backticks: {line[:80]}"
        rows[match.group(1)] = match.group(2)
    return rows


def option_names(command: click.Command) -> set[str]:
    """Every option name of ``command`` and, for a group, of its subcommands."""
    names = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            names |= option_names(sub)
    return names | {"-h", "--help"}


def spans(row: str) -> list[str]:
    return re.findall(r"`([^`]+)`", row)


def test_every_command_is_in_the_readme_and_every_listed_one_exists():
    rows = command_rows()
    assert sorted(rows) == sorted(cli.commands)


def test_every_option_in_the_table_exists():
    global_options = option_names(cli) - option_names_of_subcommands()
    problems = []
    for name, row in command_rows().items():
        for span in spans(row):
            words = span.split()
            words = words[1:] if words[:1] == ["immich-search"] else words
            # `sync --watch` in another command's row, or an example: the options belong to that command.
            target = cli.commands.get(words[0]) if words and words[0] in cli.commands else cli.commands[name]
            for option in OPTION.findall(" ".join(words)):
                if option not in option_names(target) and option not in global_options:
                    problems.append(f"{name}: {span!r} names {option}, which `{target.name}` does not have")
    assert problems == []


def option_names_of_subcommands() -> set[str]:
    return set().union(*(option_names(command) for command in cli.commands.values()))


def test_the_check_finds_a_missing_option():
    assert "--no-such-option" not in option_names(cli.commands["sync"])
    assert "--watch" in option_names(cli.commands["sync"])
    assert "--model-dir" in option_names(cli.commands["models"])
