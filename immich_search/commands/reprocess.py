"""``immich-search reprocess ASSET_ID...``: regenerate the OCR text and/or CLIP vector of some photos now."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import click
from rich.table import Table

from immich_search.commands.common import Settings, console, err_console, pass_settings, require_migrated
from immich_search.commands.describe_options import describe_options
from immich_search.commands.options import (
    clip_model_location,
    ocr_engine_options,
    ocr_source_option,
    preview_source_options,
)
from immich_search.errors import ConfigError


def parse_asset_ids(values: tuple[str, ...]) -> list[str]:
    """Return the asset ids as canonical uuid strings, in order, without duplicates.

    Raises:
        click.BadParameter: a value is not a uuid.
    """
    ids: list[str] = []
    for value in values:
        try:
            canonical = str(uuid.UUID(value.strip()))
        except ValueError:
            raise click.BadParameter(f"{value!r} is not an asset id (a uuid)", param_hint="ASSET_ID") from None
        if canonical not in ids:
            ids.append(canonical)
    return ids


@click.command()
@click.argument("asset_ids", nargs=-1, required=True, metavar="ASSET_ID...")
@click.option("--ocr", "want_ocr", is_flag=True, help="Regenerate the OCR text (default: OCR and, if set up, CLIP).")
@click.option("--clip", "want_clip", is_flag=True, help="Regenerate the CLIP vector (needs the cn-clip model).")
@click.option(
    "--describe",
    "want_describe",
    is_flag=True,
    help="Describe the photo again with the vision LLM (needs --describe-host, unless --queue-only).",
)
@click.option(
    "--queue-only",
    is_flag=True,
    help="Only put the jobs at the head of the queue; a running `sync --watch` picks them up at once.",
)
@preview_source_options
@ocr_source_option("rapidocr")
@ocr_engine_options
@clip_model_location
@describe_options
@pass_settings
def reprocess(
    settings: Settings,
    asset_ids: tuple[str, ...],
    want_ocr: bool,
    want_clip: bool,
    queue_only: bool,
    media_root: str | None,
    immich_media_location: str | None,
    source: str,
    immich_url: str | None,
    api_keys: str | None,
    ocr_source: str,
    ocr_engine: str,
    ocr_det_max_side: int | None,
    clip_model_dir: Path | None,
    clip_arch: str | None,
    want_describe: bool = False,
    describe=None,
    write_immich: str = "none",
) -> None:
    """Regenerate the data of some photos now, as "regenerate OCR / CLIP" in a photo's menu.

    ASSET_ID is Immich's asset id (the last part of the photo's URL in Immich's web app). The jobs are put
    at the head of the queue and done here and now; a worker busy with one of them loses it. By default the
    text is recognised again by our OCR engine (--ocr-source rapidocr, --ocr-engine), even where Immich has
    its own. Exits 1 when a job did not succeed (the reason is printed). From psql:
    SELECT immich_search.requeue(ARRAY[...]::uuid[]).

    \b
    Examples:
      immich-search reprocess 6f1c2a43-3b5e-4a8e-9a0c-2d4f5e6a7b8c
      immich-search reprocess 6f1c2a43-3b5e-4a8e-9a0c-2d4f5e6a7b8c --ocr --media-root /srv/immich/library
      immich-search reprocess 6f1c2a43-3b5e-4a8e-9a0c-2d4f5e6a7b8c --clip --clip-model-dir /models
      immich-search reprocess 6f1c2a43-3b5e-4a8e-9a0c-2d4f5e6a7b8c --queue-only
      immich-search reprocess 6f1c2a43-3b5e-4a8e-9a0c-2d4f5e6a7b8c --ocr --ocr-engine rapidocr-v6
      immich-search reprocess 6f1c2a43-3b5e-4a8e-9a0c-2d4f5e6a7b8c --describe --describe-host http://gpu:11434 \
          --describe-model qwen2.5vl:3b --write-immich missing
    """
    from immich_search.db import open_pool
    from immich_search.sqlfiles import query
    from immich_search.sync.api_source import split_api_keys
    from immich_search.sync.immich_write import build_writer, database_now, summary_line
    from immich_search.sync.workers import WorkerSpec, build_pipeline, build_source, build_tasks

    ids = parse_asset_ids(asset_ids)
    if want_describe and describe is None and not queue_only:
        raise click.UsageError("--describe needs the vision host: --describe-host URL --describe-model NAME")
    if describe is not None and not queue_only:
        # A missing address or key is said before anything else; each run builds its own writer.
        writer = build_writer(write_immich, immich_url, split_api_keys(api_keys))
        if writer is not None:
            writer.close()
    url = settings.resolve_url()
    require_migrated(url)
    with open_pool(url) as pool:
        with pool.connection() as conn:
            found = {str(row[0]) for row in conn.execute(query("existing_assets"), {"asset_ids": ids})}
            clip_configured = conn.execute(query("clip_model_setting")).fetchone() is not None
        missing = [asset_id for asset_id in ids if asset_id not in found]
        for asset_id in missing:
            err_console.print(f"[yellow]no asset {asset_id} in Immich's database: skipped[/yellow]")
        ids = [asset_id for asset_id in ids if asset_id in found]
        if not ids:
            raise ConfigError("none of the given asset ids exists in Immich's database")
        explicit = want_ocr or want_clip or want_describe
        if not explicit:
            want_ocr, want_clip, want_describe = True, clip_configured, describe is not None
        tasks = (
            (["ocr"] if want_ocr else []) + (["clip"] if want_clip else []) + (["describe"] if want_describe else [])
        )

        if queue_only:
            with pool.connection() as conn:
                queued = conn.execute(query("requeue"), {"asset_ids": ids, "tasks": tasks}).fetchone()[0]
            click.echo(f"queued {queued} job(s) at the head of the queue ({', '.join(tasks)})")
            return

        spec = WorkerSpec(
            database_url=url,
            source=source,
            media_root=media_root,
            immich_media_location=immich_media_location,
            immich_url=immich_url,
            api_keys=split_api_keys(api_keys),
            ocr_source=ocr_source,
            ocr_engine=ocr_engine,
            ocr_det_max_side=ocr_det_max_side,
            # --clip asked for explicitly requires the model; by default CLIP is redone when it loads.
            clip=(True if explicit else None) if want_clip else False,
            clip_model_dir=str(clip_model_dir) if clip_model_dir else None,
            clip_arch=clip_arch,
            outage_timeout_s=60.0,
            describe=describe if want_describe else None,
            write_immich=write_immich,
        )
        built, why_not = build_tasks(spec)
        if want_clip and not any(task.name == "clip" for task in built):
            err_console.print(f"[yellow]{why_not}[/yellow]\n[yellow]regenerating the OCR text only.[/yellow]")
            tasks.remove("clip")
        chosen = [task for task in built if task.name in tasks]
        pipeline = build_pipeline(spec, pool, chosen, build_source(spec))
        with pool.connection() as conn:
            since = database_now(conn)
        try:
            pipeline.prepare()
            held = pipeline.queue.reserve(ids, tasks)
            report = pipeline.run_once(discover_changes=False, asset_ids=ids, jobs=held)
        finally:
            pipeline.close()
        with pool.connection() as conn:
            rows = conn.execute(query("asset_jobs"), {"asset_ids": ids}).fetchall()
            written = summary_line(conn, write_immich, since) if spec.describe and write_immich != "none" else None
    table = Table("asset", "task", "state", "attempts", "reason")
    ok = True
    for asset_id, task, state, attempts, error, _ in rows:
        if task not in tasks:
            continue
        ok = ok and state == "done"
        colour = "green" if state == "done" else "red"
        table.add_row(str(asset_id), task, f"[{colour}]{state}[/{colour}]", str(attempts), error or "")
    console.print(table)
    click.echo(f"regenerated {report.done} job(s), {report.failed} failed")
    if written:
        click.echo(written)
    if not ok:
        sys.exit(1)
