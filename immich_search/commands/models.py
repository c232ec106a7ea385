"""``immich-search models list|verify|export``: what is installed, whether it is sound, how to make it.

The work is done by plain functions (:func:`list_variants`, :func:`verify_variants`,
:func:`export_variant`) that return data or raise :class:`~immich_search.errors.ImmichSearchError`; the
click group :data:`models` only formats. The main CLI attaches it with ``cli.add_command(models)``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import click
from PIL import Image

from immich_search.commands.options import model_dir_option
from immich_search.errors import ConfigError, ImmichSearchError
from immich_search.runtime.manifest import (
    ROLES,
    ModelVariant,
    default_model_dir,
    load_manifest,
    present_precisions,
    variant_dir,
)
from immich_search.runtime.model import ClipImageEncoder, ClipTextEncoder
from immich_search.runtime.session import CPU_PROVIDER, ModelError, OnnxSession
from immich_search.runtime.tokenizer import ClipTokenizer, cn_clip_vocab_path, find_vocab_file, load_vocab

EXPORT_MODULES = ("cn_clip", "torch", "onnx", "onnxmltools")
"""Modules cn-clip's exporter (``cn_clip/deploy/pytorch_to_onnx.py``) imports."""

EXPORTER_MODULE = "cn_clip.deploy.pytorch_to_onnx"

EXPORTER_SHIM = f"""
import inspect, runpy
try:
    import torch, torch.onnx
except ImportError:
    torch = None
if torch is not None and int(torch.__version__.split(".")[0]) >= 2:
    # cn-clip asks for opset 13, but torch 2 traces attention as scaled_dot_product_attention, which
    # needs opset 14; and torch.onnx.export's newer dynamo exporter is not what cn-clip was written for.
    _export = torch.onnx.export
    _accepts_dynamo = "dynamo" in inspect.signature(_export).parameters
    def _export_for_cn_clip(*args, **kwargs):
        kwargs["opset_version"] = max(int(kwargs.get("opset_version") or 13), 14)
        if _accepts_dynamo:
            kwargs.setdefault("dynamo", False)
        return _export(*args, **kwargs)
    torch.onnx.export = _export_for_cn_clip
try:
    import onnxmltools, onnxmltools.utils
except ImportError:
    onnxmltools = None
if onnxmltools is not None:
    _to_fp16 = onnxmltools.utils.convert_float_to_float16
    if tuple(int(part) for part in onnxmltools.__version__.split(".")[:2]) >= (1, 14):
        # onnxmltools 1.14 replaced it by a stub that points at onnxconverter_common's.
        from onnxconverter_common.float16 import convert_float_to_float16 as _to_fp16
    def _fp16_for_cn_clip(model, *args, **kwargs):
        # torch 2 writes Cast(to=float) nodes for cn-clip's `.type(dtype)` calls on float32 tensors;
        # the converter leaves them alone (float16 and float32 tensors then meet) or drops them with
        # the cast it puts after a float32 input. Retype those casts to float16 and make sure every
        # float32 input is cast to float16.
        from onnx import TensorProto, helper
        exported = {{node.name for node in model.graph.node if node.op_type == "Cast"}}
        converted = _to_fp16(model, *args, **kwargs)
        graph = converted.graph
        outputs = {{output.name for output in graph.output}}
        for node in graph.node:
            if node.op_type == "Cast" and node.name in exported and not set(node.output) & outputs:
                for attribute in node.attribute:
                    if attribute.name == "to" and attribute.i == TensorProto.FLOAT:
                        attribute.i = TensorProto.FLOAT16
        for value in graph.input:
            if value.type.tensor_type.elem_type != TensorProto.FLOAT:
                continue
            users = [node for node in graph.node if value.name in node.input and node.op_type != "Cast"]
            if users:
                cast = value.name + "_to_float16"
                for node in users:
                    for index, name in enumerate(node.input):
                        if name == value.name:
                            node.input[index] = cast
                graph.node.insert(0, helper.make_node(
                    "Cast", [value.name], [cast], to=TensorProto.FLOAT16, name=cast))
        return converted
    onnxmltools.utils.convert_float_to_float16 = _fp16_for_cn_clip
runpy.run_module("{EXPORTER_MODULE}", run_name="__main__", alter_sys=True)
"""
"""Runs cn-clip's exporter unchanged but for what newer libraries need: ``torch.onnx.export`` arguments
for torch 2; onnxconverter_common's float16 converter where onnxmltools (>= 1.14) dropped its own; and
float16 ``Cast`` nodes where torch 2 writes float32 ones the converter leaves alone."""

SMOKE_TEXT = "一只猫"
"""Text encoded by ``verify`` to prove the text model runs."""


class ExportError(ImmichSearchError):
    """cn-clip's exporter is not installed, or it failed (the message points at its log)."""


@dataclass(frozen=True)
class VariantStatus:
    """A variant and what of it is installed.

    Attributes:
        variant: the manifest entry.
        directory: where its files are looked for.
        present: precisions whose image and text files both exist there.
    """

    variant: ModelVariant
    directory: Path
    present: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    """One verification step: what was checked, whether it passed, and a detail for the user."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class VerifyReport:
    """The checks of one variant at one precision; ``ok`` when every check passed."""

    arch: str
    precision: str
    directory: Path
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Return whether every check passed."""
        return all(check.ok for check in self.checks)


def list_variants(model_dir: str | os.PathLike[str] | None = None) -> list[VariantStatus]:
    """Return every manifest variant with the precisions installed under ``model_dir``.

    ``model_dir`` defaults to :func:`~immich_search.runtime.manifest.default_model_dir`; it need not exist.
    """
    root = Path(model_dir) if model_dir is not None else default_model_dir()
    result = []
    for variant in load_manifest().variants.values():
        folder = variant_dir(root, variant)
        result.append(VariantStatus(variant, folder, tuple(present_precisions(folder, variant))))
    return result


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Return the hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_vocab(path: Path) -> list[Check]:
    """Check a vocab.txt against the manifest: checksum, size, special token ids."""
    info = load_manifest().vocab
    checks = []
    if info.sha256 is not None:
        actual = sha256_file(path)
        same = actual == info.sha256
        checks.append(Check("vocab checksum", same, "matches cn-clip's" if same else f"sha256 {actual}"))
    try:
        vocab = load_vocab(path)
    except ModelError as error:
        return [*checks, Check("vocab entries", False, str(error))]
    wrong = {token: vocab.get(token) for token, wanted in info.special_ids.items() if vocab.get(token) != wanted}
    checks.append(
        Check(
            "vocab entries",
            len(vocab) == info.size and not wrong,
            f"{len(vocab)} tokens" + (f", special ids {wrong} (expected {dict(info.special_ids)})" if wrong else ""),
        )
    )
    return checks


def _check_files(folder: Path, variant: ModelVariant, precision: str) -> list[Check]:
    """Check that a precision's files exist and, where the manifest knows them, their checksums."""
    checks = []
    for role in ROLES:
        entry = variant.file(role, precision)
        for name in (entry.file, *entry.external_data):
            path = folder / name
            checks.append(Check(f"file {name}", path.is_file(), str(path) if path.is_file() else "missing"))
        path = folder / entry.file
        if entry.sha256 is not None and path.is_file():
            actual = sha256_file(path)
            same = actual == entry.sha256
            checks.append(Check(f"checksum {entry.file}", same, "matches" if same else f"sha256 {actual}"))
    return checks


def _check_models(folder: Path, variant: ModelVariant, precision: str, vocab: Path | None) -> list[Check]:
    """Load both models on the CPU, check their signatures and run each once."""
    checks = []
    image_path = folder / variant.file("image", precision).file
    if image_path.is_file():
        try:
            encoder = ClipImageEncoder(OnnxSession(image_path, [CPU_PROVIDER]), variant.image_size, variant.embed_dim)
            checks.append(Check("image model signature", True, encoder.session.inputs[0].describe()))
            features = encoder.encode_images([Image.new("RGB", (variant.image_size,) * 2, (128, 128, 128))])
            checks.append(
                Check(
                    "image model runs",
                    features.shape == (1, variant.embed_dim),
                    f"features {list(features.shape)}",
                )
            )
        except ModelError as error:
            checks.append(Check("image model", False, str(error)))
    text_path = folder / variant.file("text", precision).file
    if text_path.is_file() and vocab is not None:
        try:
            tokenizer = ClipTokenizer.from_file(vocab, variant.context_length)
            text_encoder = ClipTextEncoder(OnnxSession(text_path, [CPU_PROVIDER]), tokenizer, variant.embed_dim)
            checks.append(Check("text model signature", True, text_encoder.session.inputs[0].describe()))
            features = text_encoder.encode_texts([SMOKE_TEXT])
            checks.append(
                Check(
                    "text model runs",
                    features.shape == (1, variant.embed_dim),
                    f"features {list(features.shape)}",
                )
            )
        except ModelError as error:
            checks.append(Check("text model", False, str(error)))
    return checks


def verify_variants(
    model_dir: str | os.PathLike[str] | None = None,
    arch: str | None = None,
    precision: str | None = None,
    vocab_path: str | os.PathLike[str] | None = None,
    run_models: bool = True,
) -> list[VerifyReport]:
    """Verify installed models: files present, checksums where known, vocabulary, signatures, a test run.

    Args:
        model_dir: the model directory (default :func:`~immich_search.runtime.manifest.default_model_dir`).
        arch: the variant to check; default every variant with files present.
        precision: ``fp32`` or ``fp16``; default every precision present (the first one when none is).
        vocab_path: cn-clip's vocab.txt; default found as
            :func:`~immich_search.runtime.tokenizer.find_vocab_file`.
        run_models: also load each model with onnxruntime on the CPU, check its inputs and outputs
            against the manifest, and encode one grey image and one short text.

    Returns:
        One :class:`VerifyReport` per variant and precision checked.

    Raises:
        ConfigError: unknown ``arch`` or ``precision``.
        ModelError: ``arch`` is None and no variant has files in ``model_dir``.
    """
    manifest = load_manifest()
    root = Path(model_dir) if model_dir is not None else default_model_dir()
    if arch is not None:
        variants = [manifest.variant(arch)]
    else:
        variants = [v for v in manifest.variants.values() if present_precisions(variant_dir(root, v), v)]
        if not variants:
            raise ModelError(
                f"no cn-clip models found in {root}; see `immich-search models export --help` or models/README.md"
            )
    reports = []
    for variant in variants:
        folder = variant_dir(root, variant)
        if precision is not None:
            variant.file("image", precision)  # ConfigError for an unknown precision
            precisions = [precision]
        else:
            precisions = present_precisions(folder, variant) or [variant.precisions[0]]
        for chosen in precisions:
            report = VerifyReport(variant.arch, chosen, folder)
            report.checks.extend(_check_files(folder, variant, chosen))
            vocab: Path | None
            try:
                vocab = find_vocab_file(folder, root, explicit=str(vocab_path) if vocab_path is not None else None)
                report.checks.append(Check("vocab file", True, str(vocab)))
                report.checks.extend(_check_vocab(vocab))
            except ModelError as error:
                vocab = None
                report.checks.append(Check("vocab file", False, str(error)))
            if run_models:
                report.checks.extend(_check_models(folder, variant, chosen, vocab))
            reports.append(report)
    return reports


def missing_export_modules() -> list[str]:
    """Return the modules of :data:`EXPORT_MODULES` that cannot be imported here (found without importing)."""
    missing = []
    for name in EXPORT_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


@dataclass(frozen=True)
class ExportResult:
    """What an export produced: the model files (both precisions), the vocabulary copy and the log."""

    directory: Path
    files: list[Path]
    log: Path


def export_variant(
    arch: str,
    checkpoint: str | os.PathLike[str],
    output_dir: str | os.PathLike[str] | None = None,
    model_dir: str | os.PathLike[str] | None = None,
) -> ExportResult:
    """Export a cn-clip PyTorch checkpoint to ONNX with cn-clip's own exporter.

    Runs cn-clip's ``cn_clip/deploy/pytorch_to_onnx.py --model-arch ARCH --pytorch-ckpt-path CHECKPOINT
    --save-onnx-path OUTPUT/<prefix> --convert-text --convert-vision`` (which writes fp32 and fp16 image
    and text models), with cn-clip's package folder on ``PYTHONPATH`` as its deployment guide requires,
    its output in ``OUTPUT/export.log``; then copies cn-clip's ``vocab.txt`` beside the models.

    Under torch 2 the script's ``torch.onnx.export`` calls get opset 14 instead of 13 (torch 2 exports
    attention as ``scaled_dot_product_attention``, which opset 13 lacks) and the TorchScript-based
    exporter (``dynamo=False``) it was written for; the float16 conversion uses onnxconverter_common's
    converter where onnxmltools >= 1.14 dropped its own, and repairs the float32 ``Cast`` nodes torch 2
    writes; see :data:`EXPORTER_SHIM`. ``models verify`` loads and runs what was written.

    Args:
        arch: cn-clip architecture (``ViT-B-16``, ...).
        checkpoint: the ``.pt`` file (cn-clip's pretrained ``clip_cn_*.pt`` or a fine-tuned one).
        output_dir: where the files go; default ``<model_dir>/<arch>``.
        model_dir: the model directory for the default output (default
            :func:`~immich_search.runtime.manifest.default_model_dir`).

    Returns:
        The files written (see :class:`ExportResult`).

    Raises:
        ConfigError: unknown ``arch``.
        ExportError: the exporter's modules are missing, the checkpoint does not exist, or the exporter
            failed (the message includes the end of its log).
    """
    variant = load_manifest().variant(arch)
    missing = missing_export_modules()
    if missing:
        raise ExportError(
            f"exporting needs {', '.join(missing)}, not installed here: pip install 'immich-search[export]'"
        )
    source = Path(checkpoint).expanduser()
    if not source.is_file():
        raise ExportError(f"checkpoint not found: {source}")
    root = Path(model_dir) if model_dir is not None else default_model_dir()
    target = Path(output_dir) if output_dir is not None else root / variant.arch
    target.mkdir(parents=True, exist_ok=True)
    log_path = target / "export.log"
    package_dir = _cn_clip_package_dir()
    env = dict(os.environ)
    # pytorch_to_onnx.py imports `from clip.utils import ...`: cn-clip's own folder must be on the path.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(package_dir), env.get("PYTHONPATH", "")) if p)
    command = [
        sys.executable,
        "-c",
        EXPORTER_SHIM,
        "--model-arch",
        variant.arch,
        "--pytorch-ckpt-path",
        str(source.resolve()),
        "--save-onnx-path",
        str((target / variant.file_prefix).resolve()),
        "--convert-text",
        "--convert-vision",
    ]
    with log_path.open("w", encoding="utf-8") as log:
        completed = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=target, check=False)
    if completed.returncode != 0:
        tail = "\n".join(log_path.read_text("utf-8", errors="replace").splitlines()[-15:])
        raise ExportError(f"cn-clip's exporter failed (exit {completed.returncode}); end of {log_path}:\n{tail}")
    files = [
        target / name
        for precision in variant.precisions
        for name in variant.all_files(precision)
        if (target / name).is_file()
    ]
    vocab = cn_clip_vocab_path()
    if vocab is not None:
        shutil.copyfile(vocab, target / "vocab.txt")
        files.append(target / "vocab.txt")
    if not present_precisions(target, variant):
        raise ExportError(f"cn-clip's exporter finished but wrote no complete model pair in {target}; see {log_path}")
    return ExportResult(target, files, log_path)


def _cn_clip_package_dir() -> Path:
    """Return the folder of the installed ``cn_clip`` package (not imported: it imports torch)."""
    spec = importlib.util.find_spec("cn_clip")
    if spec is None or not spec.submodule_search_locations:
        raise ExportError("cn_clip is not installed: pip install 'immich-search[export]'")
    return Path(next(iter(spec.submodule_search_locations)))


# ---------------------------------------------------------------------------------------------- CLI

_MODEL_DIR_HELP = "Model directory [default: $IMMICH_SEARCH_MODEL_DIR, else <user data dir>/immich-search/models]."


_ARCH_HELP = "RN50, ViT-B-16, ViT-L-14, ViT-L-14-336 or ViT-H-14 (any case)"


def _arch_option(value: str | None) -> str | None:
    """Return the manifest's spelling of an architecture, or raise click's usage error."""
    if value is None:
        return None
    try:
        return load_manifest().variant(value).arch
    except ConfigError as error:
        raise click.BadParameter(str(error)) from error


@click.group(name="models", context_settings={"help_option_names": ["-h", "--help"]})
def models() -> None:
    """Manage the Chinese-CLIP (cn-clip) models: list, verify, export.

    Example:

    \b
        immich-search models list
    """


@models.command(name="list")
@model_dir_option("--model-dir", help=_MODEL_DIR_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_command(model_dir: Path | None, as_json: bool) -> None:
    """List the cn-clip variants and which are installed in the model directory.

    Example:

    \b
        immich-search models list --model-dir /srv/models
    """
    statuses = list_variants(model_dir)
    if as_json:
        rows = [
            {
                "arch": s.variant.arch,
                "name": s.variant.name,
                "embed_dim": s.variant.embed_dim,
                "image_size": s.variant.image_size,
                "default": s.variant.default,
                "present": list(s.present),
                "directory": str(s.directory),
            }
            for s in statuses
        ]
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    root = Path(model_dir) if model_dir is not None else default_model_dir()
    table = Table(title=f"cn-clip models in {root}", title_justify="left")
    for column in ("arch", "dim", "pixels", "parameters", "default", "installed"):
        table.add_column(column, no_wrap=True)
    for s in statuses:
        table.add_row(
            s.variant.arch,
            str(s.variant.embed_dim),
            str(s.variant.image_size),
            s.variant.parameters,
            "yes" if s.variant.default else "",
            ", ".join(s.present) or "-",
        )
    Console().print(table)


@models.command(name="verify")
@model_dir_option("--model-dir", help=_MODEL_DIR_HELP)
@click.option(
    "--arch",
    metavar="ARCH",
    callback=lambda _ctx, _param, value: _arch_option(value),
    help=f"Variant to check: {_ARCH_HELP} [default: every installed one].",
)
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), help="Precision [default: every installed one].")
@click.option(
    "--vocab",
    "vocab_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="cn-clip's vocab.txt [default: from the cn_clip package, else the model directory].",
)
@click.option("--no-run", is_flag=True, help="Only check files and checksums; do not load the models.")
def verify_command(
    model_dir: Path | None, arch: str | None, precision: str | None, vocab_path: Path | None, no_run: bool
) -> None:
    """Check installed models: files present, checksums where known, vocabulary, input/output names,
    types and shapes, and one test encoding of an image and a text. Exits non-zero on any failure.

    Example:

    \b
        immich-search models verify --arch ViT-B-16
    """
    try:
        reports = verify_variants(model_dir, arch, precision, vocab_path, run_models=not no_run)
    except ImmichSearchError as error:
        raise click.ClickException(str(error)) from error
    for report in reports:
        click.echo(f"{report.arch} {report.precision} in {report.directory}:")
        for check in report.checks:
            mark = "ok  " if check.ok else "FAIL"
            click.echo(f"  {mark} {check.name}" + (f": {check.detail}" if check.detail else ""))
    failed = [f"{r.arch} {r.precision}" for r in reports if not r.ok]
    if failed:
        raise click.ClickException(f"verification failed for {', '.join(failed)}")


@models.command(name="export")
@click.option(
    "--arch",
    required=True,
    metavar="ARCH",
    callback=lambda _ctx, _param, value: _arch_option(value),
    help=f"cn-clip architecture to export: {_ARCH_HELP}.",
)
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PyTorch checkpoint (.pt), e.g. clip_cn_vit-b-16.pt.",
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder [default: <model dir>/<arch>].",
)
@model_dir_option("--model-dir", help=_MODEL_DIR_HELP)
def export_command(arch: str, checkpoint: Path, output: Path | None, model_dir: Path | None) -> None:
    """Export a cn-clip checkpoint to ONNX (fp32 and fp16) with cn-clip's own exporter.

    Needs the optional dependencies: pip install 'immich-search[export]' (cn_clip, torch, onnx,
    onnxmltools). Checkpoints: see models/README.md.

    Example:

    \b
        immich-search models export --arch ViT-B-16 --checkpoint clip_cn_vit-b-16.pt
    """
    try:
        result = export_variant(arch, checkpoint, output, model_dir)
    except ImmichSearchError as error:
        raise click.ClickException(str(error)) from error
    click.echo(f"exported {arch} to {result.directory} (log: {result.log}):")
    for path in result.files:
        click.echo(f"  {path.name}")
    click.echo(f"check it with: immich-search models verify --arch {arch} --model-dir {result.directory}")


__all__ = [
    "Check",
    "ExportError",
    "ExportResult",
    "VariantStatus",
    "VerifyReport",
    "export_variant",
    "list_variants",
    "missing_export_modules",
    "models",
    "sha256_file",
    "verify_variants",
]
