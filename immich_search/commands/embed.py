"""``immich-search embed``: print the cn-clip vector of a text or an image, for psql."""

from __future__ import annotations

from pathlib import Path

import click

from immich_search.commands.common import CONTEXT_SETTINGS
from immich_search.commands.options import clip_model_location
from immich_search.runtime.loading import load_clip_model


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("text", required=False)
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Embed this image.")
@clip_model_location
def embed(text: str | None, image: Path | None, clip_model_dir: Path | None, clip_arch: str | None) -> None:
    """Print the cn-clip vector of TEXT (or of --image) as a pgvector literal, for psql.

    \b
    Examples:
      immich-search embed '一只猫'
      immich-search embed --image cat.jpg
      psql "$DB_URL" -c "SELECT * FROM immich_search.search('一只猫', '$(immich-search embed 一只猫)', '<user id>')"
    """
    from PIL import Image, UnidentifiedImageError

    if (text is None) == (image is None):
        raise click.UsageError("give either TEXT or --image")
    model, _ = load_clip_model(True, clip_model_dir, clip_arch, "text" if text is not None else "image")
    if text is not None:
        vector = model.encode_texts([text])[0]
    else:
        try:
            with Image.open(image) as opened:
                vector = model.encode_images([opened.convert("RGB")])[0]
        except (UnidentifiedImageError, OSError) as error:
            raise click.BadParameter(f"cannot read {image}: {error}", param_hint="--image") from error
    click.echo("[" + ",".join(f"{value:.7g}" for value in vector) + "]")
