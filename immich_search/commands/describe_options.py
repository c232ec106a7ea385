"""``--describe-*`` options (``sync``, ``reprocess``): the vision LLM hosts of the ``describe`` task.

The task is off unless ``--describe-host`` (or ``IMMICH_SEARCH_DESCRIBE_HOSTS``) names at least one host.
The decorated command receives the keywords ``describe``: a
:class:`~immich_search.sync.vision.VisionConfig` or ``None``, and ``write_immich``: ``none`` | ``missing`` |
``all`` (descriptions into Immich's own description field, see :mod:`immich_search.sync.immich_write`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from immich_search.errors import ConfigError
from immich_search.sync.immich_write import WRITE_MODES
from immich_search.sync.vision import (
    BACKENDS,
    DEFAULT_LANGUAGE,
    DEFAULT_MAX_CONCURRENT,
    DEFAULT_PROMPT,
    DEFAULT_SET_ASIDE_S,
    DEFAULT_TIMEOUT_S,
    VisionConfig,
)

_NAMES = (
    "describe_backend",
    "describe_hosts",
    "describe_model",
    "describe_prompt",
    "describe_language",
    "describe_timeout",
    "describe_max_concurrent",
    "describe_set_aside",
    "describe_api_key",
)


def vision_config(values: dict[str, Any]) -> VisionConfig | None:
    """Build the describe task's config from the option values (``None`` when no host is given).

    Raises:
        click.UsageError: a host without a model, a bad URL, a bad limit.
    """
    hosts = tuple(h.strip() for raw in values["describe_hosts"] or () for h in raw.split(",") if h.strip())
    if not hosts:
        return None
    try:
        return VisionConfig(
            backend=values["describe_backend"],
            hosts=hosts,
            model=values["describe_model"] or "",
            prompt=values["describe_prompt"] or DEFAULT_PROMPT,
            language=values["describe_language"],
            timeout_s=values["describe_timeout"],
            max_concurrent=values["describe_max_concurrent"],
            set_aside_s=values["describe_set_aside"],
            api_key=values["describe_api_key"] or None,
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def describe_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the ``--describe-*`` options and ``--write-immich``; the command gets ``describe`` (VisionConfig |
    None) and ``write_immich`` (str).

    Raises:
        click.UsageError: ``--write-immich missing|all`` without ``--describe-host``.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in _NAMES}
        describe = vision_config(values)
        if kwargs["write_immich"] != "none" and describe is None:
            raise click.UsageError(
                f"--write-immich {kwargs['write_immich']} writes the describe task's descriptions into Immich: "
                "give the vision host too (--describe-host URL --describe-model NAME)"
            )
        return command(*args, describe=describe, **kwargs)

    options = [
        click.option(
            "--describe-host",
            "describe_hosts",
            multiple=True,
            envvar="IMMICH_SEARCH_DESCRIBE_HOSTS",
            metavar="URL[,URL...]",
            help="Vision LLM servers for photo descriptions, tried in order (turns the describe task on), e.g. "
            "http://gpu:11434 (env IMMICH_SEARCH_DESCRIBE_HOSTS).",
        ),
        click.option(
            "--describe-backend",
            type=click.Choice(BACKENDS),
            default="ollama",
            show_default=True,
            envvar="IMMICH_SEARCH_DESCRIBE_BACKEND",
            help="ollama (/api/chat) or openai (/v1/chat/completions: llama.cpp, vLLM, LM Studio).",
        ),
        click.option(
            "--describe-model",
            envvar="IMMICH_SEARCH_DESCRIBE_MODEL",
            metavar="NAME",
            help="The vision model on the server, e.g. qwen2.5vl:3b (env IMMICH_SEARCH_DESCRIBE_MODEL).",
        ),
        click.option("--describe-prompt", metavar="TEXT", help="The instruction ({language} is replaced)."),
        click.option(
            "--describe-language",
            default=DEFAULT_LANGUAGE,
            show_default=True,
            help="The language descriptions are written in.",
        ),
        click.option(
            "--describe-timeout",
            default=DEFAULT_TIMEOUT_S,
            show_default=True,
            type=click.FloatRange(0.1),
            help="Seconds one request may take.",
        ),
        click.option(
            "--max-concurrent",
            "describe_max_concurrent",
            default=DEFAULT_MAX_CONCURRENT,
            show_default=True,
            type=click.IntRange(1, 64),
            help="Describe requests in flight per vision host.",
        ),
        click.option(
            "--describe-set-aside",
            default=DEFAULT_SET_ASIDE_S,
            show_default=True,
            type=click.FloatRange(0),
            help="Seconds a failing vision host is left alone before it is tried again.",
        ),
        click.option(
            "--describe-api-key",
            envvar="IMMICH_SEARCH_DESCRIBE_API_KEY",
            metavar="KEY",
            help="Bearer key of an OpenAI-compatible server (env IMMICH_SEARCH_DESCRIBE_API_KEY).",
        ),
        click.option(
            "--write-immich",
            type=click.Choice(WRITE_MODES),
            default="none",
            show_default=True,
            envvar="IMMICH_SEARCH_WRITE_IMMICH",
            help="Also write each description into Immich's own description field (its info panel, its search), "
            "through Immich's API with the owner's key (--immich-url, --api-key: one key per user). missing: only "
            "where Immich's description is empty or still the one we wrote (a person's text is kept); all: "
            "everywhere, REPLACING text people wrote; none: never call Immich (env IMMICH_SEARCH_WRITE_IMMICH).",
        ),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper
