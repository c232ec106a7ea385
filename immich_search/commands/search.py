"""``immich-search search``: search photos by the text in them and by what they show."""

from __future__ import annotations

import json
from pathlib import Path

import click

from immich_search.commands.common import (
    CONTEXT_SETTINGS,
    Settings,
    err_console,
    pass_settings,
    print_hits,
    require_migrated,
    resolve_user,
)
from immich_search.commands.options import clip_model_options
from immich_search.runtime.loading import load_clip_model


class QueryFirstCommand(click.Command):
    """A command whose one argument may start with ``-`` (the query language's exclusion, ``-发票``).

    click would read ``-发票`` as an unknown option. A word that starts with ``-`` but is none of the
    command's options (nor the value of one) is taken as the argument; ``--`` still works too
    (``immich-search search -- -发票``) and is the way for a query that looks like an option (``-h``).
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:  # noqa: D102
        names: dict[str, bool] = {}  # option name -> takes a value
        for param in self.get_params(ctx):
            if isinstance(param, click.Option):
                for name in param.opts + param.secondary_opts:
                    names[name] = not (param.is_flag or param.count)
        rest = list(args)
        index = 0
        while index < len(rest):
            word = rest[index]
            if word == "--":
                break
            name = word.split("=", 1)[0]
            if name in names:
                index += 2 if names[name] and "=" not in word else 1
                continue
            if word.startswith("-") and len(word) > 1:
                # Not an option of ours: the query. It goes last, behind "--", so that click reads it as is.
                return super().parse_args(ctx, rest[:index] + rest[index + 1 :] + ["--", word])
            index += 1
        return super().parse_args(ctx, rest)


@click.command(cls=QueryFirstCommand, context_settings=CONTEXT_SETTINGS)
@click.argument("query")
@click.option("--user", "who", metavar="EMAIL|ID", help="Search as this Immich user (default: the only user).")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--offset", default=0, type=click.IntRange(0))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, best first.")
@click.option(
    "--tokenizer",
    type=click.Choice(["python", "sql"]),
    default="python",
    show_default=True,
    help="Tokenise the query with jieba in Python, or in SQL exactly as psql users get it.",
)
@click.option("--include-locked", is_flag=True, help="Also search the user's locked folder.")
@click.option(
    "--mode",
    type=click.Choice(["ocr", "clip", "desc", "hybrid"]),
    help="Override the query's mode (default: its prefix, ocr:, desc: or clip:, else hybrid).",
)
@click.option(
    "--fusion",
    type=click.Choice(["rrf", "convex"]),
    default="rrf",
    show_default=True,
    help="Hybrid fusion: reciprocal rank fusion (k=60) or a convex combination of normalised scores.",
)
@click.option("--ocr-weight", default=1.0, show_default=True, type=click.FloatRange(0), help="Weight of the text.")
@click.option("--clip-weight", default=1.0, show_default=True, type=click.FloatRange(0), help="Weight of CLIP.")
@clip_model_options
@pass_settings
def search(
    settings: Settings,
    query: str,
    who: str | None,
    limit: int,
    offset: int,
    as_json: bool,
    tokenizer: str,
    include_locked: bool,
    mode: str | None,
    fusion: str,
    ocr_weight: float,
    clip_weight: float,
    clip: bool | None,
    clip_model_dir: Path | None,
    clip_arch: str | None,
) -> None:
    """Search photos by the text in them and by what they show, ranked in the database.

    QUERY uses the search-bar language: `ocr:发票` (text only), `clip:一只猫` (CLIP only), a plain
    query ranks by both (needs a cn-clip model, else text only); quotes make phrases, `-word` excludes
    (a query may start with it: `search '-发票 收据'`; `search -- QUERY` for one that looks like an
    option). `person:张三` or `person:"Anna Li"` anywhere keeps only photos showing that person (several:
    all of them); alone it lists the person's photos, newest first. Only the first 256 characters of a
    query are searched.

    \b
    Examples:
      immich-search search '一只猫' --user alice@example.com
      immich-search search 'ocr:发票' --user alice@example.com
      immich-search search 'ocr:"wild life" -crossing' --limit 20 --json
      immich-search search 'clip:海边的日落' --clip-model-dir /models
      immich-search search '生日蛋糕' --fusion convex --ocr-weight 0.6 --clip-weight 0.4
      immich-search search 'ocr:-发票 收据'
      immich-search search 'desc:风筝 海边'   # descriptions written by a vision model (sync --describe-host)
      immich-search search 'ocr:发票 person:张三'   # 张三's photos with 发票 in them
      immich-search search 'person:"Anna Li" person:张三'   # photos of both, newest first
    """
    from immich_search.db import open_pool
    from immich_search.ranking.hybrid_search import search_query
    from immich_search.ranking.people_filter import unknown_people
    from immich_search.ranking.query_language import MAX_QUERY_CHARS, Mode, parse

    if ocr_weight + clip_weight == 0:
        raise click.BadParameter("--ocr-weight and --clip-weight cannot both be 0", param_hint="weights")
    url = settings.resolve_url()
    parsed = parse(query)
    if parsed.truncated:
        err_console.print(
            f"[yellow]the query is longer than {MAX_QUERY_CHARS} characters: only its beginning is searched[/yellow]"
        )
    chosen = Mode(mode) if mode else parsed.mode
    listing = bool(parsed.people) and not parsed.has_text  # person:张三 alone: no ranking, no model
    with open_pool(url) as pool:
        with pool.connection() as conn:
            require_migrated(conn)  # on the pool's connection: a search opens no other
        if parsed.people:
            user_id, _ = resolve_user(pool, who)
            unknown = unknown_people(pool, parsed.people, user_id)
            if unknown:
                # Nothing can match: say why rather than print an empty list.
                named = ", ".join(unknown)
                err_console.print(
                    f"[yellow]no person named {named} among this user's people: `immich-search people PHOTO` "
                    "shows who is in a photo, and Immich's People page lists and names people[/yellow]"
                )
                _print([], as_json)
                return
        # The model after the database: an unreachable database is the one line a user sees.
        model = None
        if chosen not in (Mode.OCR, Mode.DESC) and not listing:
            model, why_not = load_clip_model(True if chosen is Mode.CLIP else clip, clip_model_dir, clip_arch, "text")
            if why_not:
                err_console.print(f"[yellow]{why_not}[/yellow]\n[yellow]ranking by OCR text only.[/yellow]")
        user_id, _ = resolve_user(pool, who)
        hits = search_query(
            pool,
            query,
            user_id,
            limit=limit,
            offset=offset,
            include_locked=include_locked,
            encoder=model,
            mode=chosen,
            tokenizer=tokenizer,
            fusion=fusion,
            ocr_weight=ocr_weight,
            clip_weight=clip_weight,
        )
    _print(hits, as_json)


def _print(hits: list, as_json: bool) -> None:
    """Print the hits: a JSON array, or the table."""
    if as_json:
        click.echo(json.dumps([hit.as_json() for hit in hits], ensure_ascii=False, indent=2))
        return
    print_hits(hits)
