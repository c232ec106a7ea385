"""`immich-search models list|verify|export`, on tiny real ONNX models and a stand-in cn-clip exporter."""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import textwrap
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner

from immich_search.commands import models as model_commands
from immich_search.commands.models import (
    ExportError,
    export_variant,
    list_variants,
    missing_export_modules,
    models,
    sha256_file,
    verify_variants,
)
from immich_search.errors import ConfigError
from immich_search.runtime.manifest import load_manifest
from immich_search.runtime.session import ModelError, OnnxSession
from tests.clip_fixtures import VOCAB_SIZE, TinyClip, write_corrupt_model, write_vocab


@pytest.fixture(autouse=True)
def no_installed_cn_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the vocabularies they write, even where cn_clip happens to be installed."""
    monkeypatch.setattr("immich_search.runtime.tokenizer.cn_clip_vocab_path", lambda: None)
    monkeypatch.setattr("immich_search.commands.models.cn_clip_vocab_path", lambda: None)


@pytest.fixture(scope="module")
def tiny_vit_b() -> TinyClip:
    return TinyClip(embed_dim=512)


def trust_vocab(monkeypatch: pytest.MonkeyPatch, vocab: Path) -> None:
    """Make the manifest's vocabulary checksum that of the tiny test vocabulary."""
    manifest = load_manifest()
    info = dataclasses.replace(manifest.vocab, sha256=sha256_file(vocab))
    patched = dataclasses.replace(manifest, vocab=info)
    monkeypatch.setattr(model_commands, "load_manifest", lambda: patched)


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(models, list(args), catch_exceptions=False)


# -- list -------------------------------------------------------------------------------------------------


def test_list_variants(tmp_path: Path, tiny_vit_b: TinyClip) -> None:
    statuses = list_variants(tmp_path / "nothing-here")
    assert [s.variant.arch for s in statuses] == ["RN50", "ViT-B-16", "ViT-L-14", "ViT-L-14-336", "ViT-H-14"]
    assert all(s.present == () for s in statuses)
    tiny_vit_b.write_model_dir(tmp_path, precisions=("fp32", "fp16"))
    present = {s.variant.arch: s.present for s in list_variants(tmp_path)}
    assert present["ViT-B-16"] == ("fp32", "fp16") and present["RN50"] == ()


def test_list_command(tmp_path: Path, tiny_vit_b: TinyClip, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_vit_b.write_model_dir(tmp_path)
    result = invoke("list", "--model-dir", str(tmp_path))
    assert result.exit_code == 0
    for arch in ("RN50", "ViT-B-16", "ViT-L-14-336", "ViT-H-14"):
        assert arch in result.output
    assert "fp32" in result.output
    monkeypatch.setenv("IMMICH_SEARCH_MODEL_DIR", str(tmp_path))
    rows = json.loads(invoke("list", "--json").output)
    vit_b = next(row for row in rows if row["arch"] == "ViT-B-16")
    assert vit_b == {
        "arch": "ViT-B-16",
        "name": "chinese-clip-vit-base-patch16",
        "embed_dim": 512,
        "image_size": 224,
        "default": True,
        "present": ["fp32"],
        "directory": str(tmp_path / "ViT-B-16"),
    }


# -- verify -----------------------------------------------------------------------------------------------


def checks_by_name(report) -> dict[str, model_commands.Check]:
    return {check.name: check for check in report.checks}


def test_verify_good_models(tmp_path: Path, tiny_vit_b: TinyClip, monkeypatch: pytest.MonkeyPatch) -> None:
    tiny_vit_b.write_model_dir(tmp_path, precisions=("fp32", "fp16"))
    trust_vocab(monkeypatch, tmp_path / "vocab.txt")
    reports = verify_variants(tmp_path)
    assert [(r.arch, r.precision) for r in reports] == [("ViT-B-16", "fp32"), ("ViT-B-16", "fp16")]
    assert all(r.ok for r in reports), [c for r in reports for c in r.checks if not c.ok]
    checks = checks_by_name(reports[1])
    assert "file vit-b-16.img.fp16.onnx.extra_file" in checks
    assert checks["image model signature"].detail == "image float32 [1,3,224,224]"
    assert checks["text model runs"].detail == "features [1, 512]"
    result = invoke("verify", "--model-dir", str(tmp_path), "--arch", "vit-b-16", "--precision", "fp32")
    assert result.exit_code == 0, result.output
    assert "ok   image model runs: features [1, 512]" in result.output
    assert "FAIL" not in result.output


def test_verify_flags_foreign_vocabulary(tmp_path: Path, tiny_vit_b: TinyClip) -> None:
    tiny_vit_b.write_model_dir(tmp_path)
    (report,) = verify_variants(tmp_path)
    failed = {check.name for check in report.checks if not check.ok}
    assert failed == {"vocab checksum"}  # the tiny vocabulary is not cn-clip's
    write_vocab(tmp_path / "vocab.txt")  # and now too short as well
    failed = {check.name: check for check in verify_variants(tmp_path)[0].checks if not check.ok}
    assert set(failed) == {"vocab checksum", "vocab entries"}
    assert failed["vocab entries"].detail == "12571 tokens"
    result = CliRunner().invoke(models, ["verify", "--model-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert "FAIL vocab checksum" in result.output
    assert "verification failed for ViT-B-16 fp32" in result.output


def test_verify_missing_and_broken_files(tmp_path: Path, tiny_vit_b: TinyClip, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_vit_b.write_model_dir(tmp_path, precisions=("fp16",))
    trust_vocab(monkeypatch, tmp_path / "vocab.txt")
    (folder / "vit-b-16.txt.fp16.onnx.extra_file").unlink()
    write_corrupt_model(folder / "vit-b-16.img.fp16.onnx")
    checks = checks_by_name(verify_variants(tmp_path, "ViT-B-16")[0])
    assert not checks["file vit-b-16.txt.fp16.onnx.extra_file"].ok
    assert checks["file vit-b-16.txt.fp16.onnx.extra_file"].detail == "missing"
    assert not checks["image model"].ok and "cannot load ONNX model" in checks["image model"].detail
    assert not checks["text model"].ok and "extra_file" in checks["text model"].detail
    # Files only: no model is loaded.
    quick = checks_by_name(verify_variants(tmp_path, "ViT-B-16", run_models=False)[0])
    assert "image model" not in quick and "image model signature" not in quick


def test_verify_wrong_signature(tmp_path: Path, tiny_vit_b: TinyClip, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_vit_b.write_model_dir(tmp_path)
    trust_vocab(monkeypatch, tmp_path / "vocab.txt")
    tiny_vit_b.write_image_model(folder / "vit-b-16.img.fp32.onnx", input_name="pixel_values")
    TinyClip(embed_dim=8).write_text_model(folder / "vit-b-16.txt.fp32.onnx")
    checks = checks_by_name(verify_variants(tmp_path)[0])
    assert "expected one input image float32 [1,3,224,224], found pixel_values" in checks["image model"].detail
    assert "output has 8 dimensions, expected 512" in checks["text model"].detail


def test_verify_checksums(tmp_path: Path, tiny_vit_b: TinyClip, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tiny_vit_b.write_model_dir(tmp_path)
    manifest = load_manifest()
    variant = manifest.variant("ViT-B-16")
    image = variant.file("image", "fp32")
    text = variant.file("text", "fp32")
    files = {
        "fp32": {
            "image": dataclasses.replace(image, sha256=sha256_file(folder / image.file)),
            "text": dataclasses.replace(text, sha256="0" * 64),
        }
    }
    patched_variant = dataclasses.replace(variant, files=files)
    patched = dataclasses.replace(manifest, variants={"ViT-B-16": patched_variant})
    monkeypatch.setattr(model_commands, "load_manifest", lambda: patched)
    checks = checks_by_name(verify_variants(tmp_path, run_models=False)[0])
    assert checks["checksum vit-b-16.img.fp32.onnx"].ok
    assert not checks["checksum vit-b-16.txt.fp32.onnx"].ok
    assert checks["checksum vit-b-16.txt.fp32.onnx"].detail == f"sha256 {sha256_file(folder / text.file)}"


def test_verify_nothing_installed(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no cn-clip models found"):
        verify_variants(tmp_path)
    result = CliRunner().invoke(models, ["verify", "--model-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no cn-clip models found" in result.output
    # An explicit variant that is absent: every file is reported missing.
    (report,) = verify_variants(tmp_path, "RN50")
    assert [c.name for c in report.checks if not c.ok][:2] == [
        "file rn50.img.fp32.onnx",
        "file rn50.txt.fp32.onnx",
    ]
    with pytest.raises(ConfigError):
        verify_variants(tmp_path, "RN50", precision="int4")
    result = CliRunner().invoke(models, ["verify", "--arch", "ViT-Q"])
    assert result.exit_code == 2  # click rejects an unknown architecture


# -- export -----------------------------------------------------------------------------------------------

FAKE_EXPORTER = """
    # Stand-in for cn_clip/deploy/pytorch_to_onnx.py: same arguments, same output names.
    import argparse, json, os, shutil, sys
    import clip  # the real exporter does `from clip.utils import ...`: cn_clip's folder must be on the path
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-arch", required=True)
    parser.add_argument("--pytorch-ckpt-path")
    parser.add_argument("--save-onnx-path", required=True)
    parser.add_argument("--convert-text", action="store_true")
    parser.add_argument("--convert-vision", action="store_true")
    args = parser.parse_args()
    print("Params:", vars(args))
    if os.environ.get("FAKE_EXPORT_FAIL"):
        print("RuntimeError: CUDA out of memory (pretend)")
        sys.exit(3)
    source = os.environ["FAKE_EXPORT_SOURCE"]
    for name in os.listdir(source):
        kind = name.split(".", 1)[1]  # img.fp32.onnx, txt.fp16.onnx.extra_file, ...
        shutil.copyfile(os.path.join(source, name), args.save_onnx_path + "." + kind)
    with open(os.path.join(os.path.dirname(args.save_onnx_path), "argv.json"), "w") as out:
        json.dump(sys.argv[1:], out)
"""


@pytest.fixture
def fake_cn_clip(tmp_path: Path, tiny_vit_b: TinyClip, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in cn_clip package whose exporter copies tiny models; returns its vocab.txt."""
    site = tmp_path / "site"
    package = site / "cn_clip"
    (package / "deploy").mkdir(parents=True)
    (package / "clip").mkdir()
    (package / "__init__.py").write_text("")
    (package / "deploy" / "__init__.py").write_text("")
    (package / "clip" / "__init__.py").write_text("")
    (package / "deploy" / "pytorch_to_onnx.py").write_text(textwrap.dedent(FAKE_EXPORTER))
    vocab = write_vocab(package / "clip" / "vocab.txt", size=VOCAB_SIZE)
    built = tmp_path / "built"
    tiny_vit_b.write_model_dir(built, precisions=("fp32", "fp16"), vocab=False)
    monkeypatch.setenv("FAKE_EXPORT_SOURCE", str(built / "ViT-B-16"))
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setattr(model_commands, "EXPORT_MODULES", ("cn_clip",))
    monkeypatch.setattr(model_commands, "cn_clip_vocab_path", lambda: vocab)
    return vocab


def test_export_runs_cn_clip_exporter(tmp_path: Path, fake_cn_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint = tmp_path / "clip_cn_vit-b-16.pt"
    checkpoint.write_bytes(b"not really a checkpoint")
    model_dir = tmp_path / "models"
    result = export_variant("vit-b-16", checkpoint, model_dir=model_dir)
    folder = model_dir / "ViT-B-16"
    assert result.directory == folder
    assert sorted(path.name for path in result.files) == sorted(
        load_manifest().variant("ViT-B-16").all_files("fp32")
        + load_manifest().variant("ViT-B-16").all_files("fp16")
        + ["vocab.txt"]
    )
    argv = json.loads((folder / "argv.json").read_text())
    assert argv == [
        "--model-arch", "ViT-B-16",
        "--pytorch-ckpt-path", str(checkpoint.resolve()),
        "--save-onnx-path", str((folder / "vit-b-16").resolve()),
        "--convert-text", "--convert-vision",
    ]  # fmt: skip
    assert "Params:" in result.log.read_text()
    assert (folder / "vocab.txt").read_bytes() == fake_cn_clip.read_bytes()
    trust_vocab(monkeypatch, folder / "vocab.txt")
    assert all(report.ok for report in verify_variants(model_dir, "ViT-B-16"))


def test_export_command(tmp_path: Path, fake_cn_clip: Path) -> None:
    checkpoint = tmp_path / "clip_cn_vit-b-16.pt"
    checkpoint.write_bytes(b"x")
    output = tmp_path / "out"
    result = invoke("export", "--arch", "ViT-B-16", "--checkpoint", str(checkpoint), "--output", str(output))
    assert result.exit_code == 0, result.output
    assert f"exported ViT-B-16 to {output}" in result.output
    assert "vit-b-16.img.fp16.onnx.extra_file" in result.output
    assert (output / "vit-b-16.txt.fp32.onnx").is_file()
    assert f"immich-search models verify --arch ViT-B-16 --model-dir {output}" in result.output


def test_export_failure_shows_log(tmp_path: Path, fake_cn_clip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_EXPORT_FAIL", "1")
    checkpoint = tmp_path / "ckpt.pt"
    checkpoint.write_bytes(b"x")
    with pytest.raises(ExportError, match=r"(?s)exporter failed \(exit 3\).*CUDA out of memory"):
        export_variant("ViT-B-16", checkpoint, output_dir=tmp_path / "out")
    result = CliRunner().invoke(models, ["export", "--arch", "ViT-B-16", "--checkpoint", str(checkpoint)])
    assert result.exit_code == 1 and "CUDA out of memory" in result.output


def test_export_without_cn_clip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in model_commands.EXPORT_MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # importlib finds no spec for these now
    assert missing_export_modules() == list(model_commands.EXPORT_MODULES)
    checkpoint = tmp_path / "ckpt.pt"
    checkpoint.write_bytes(b"x")
    result = CliRunner().invoke(models, ["export", "--arch", "ViT-B-16", "--checkpoint", str(checkpoint)])
    assert result.exit_code == 1
    assert "pip install 'immich-search[export]'" in result.output
    assert "cn_clip" in result.output


def test_export_bad_arguments(tmp_path: Path, fake_cn_clip: Path) -> None:
    with pytest.raises(ExportError, match="checkpoint not found"):
        export_variant("ViT-B-16", tmp_path / "missing.pt", output_dir=tmp_path / "out")
    with pytest.raises(ConfigError, match="unknown cn-clip model"):
        export_variant("ViT-B-32", tmp_path / "missing.pt")
    result = CliRunner().invoke(models, ["export", "--arch", "ViT-B-16", "--checkpoint", str(tmp_path / "nope.pt")])
    assert result.exit_code == 2 and "does not exist" in result.output


FAKE_TORCH_EXPORTER = """
    # Stand-in for cn-clip's exporter: calls torch.onnx.export and onnxmltools' fp16 converter as it does.
    import argparse, json, os
    import numpy as np, onnx
    from onnx import TensorProto, helper, numpy_helper
    import torch.onnx
    from onnxmltools.utils import convert_float_to_float16
    parser = argparse.ArgumentParser()
    parser.add_argument("--save-onnx-path", required=True)
    args, _ = parser.parse_known_args()
    torch.onnx.export(None, (None,), args.save_onnx_path, opset_version=13, verbose=True)
    weight = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(4, 2) / 8, "weight")
    for case in ("kept", "dropped"):
        model = helper.make_model(helper.make_graph(
            [helper.make_node("Cast", ["image"], ["as_float"], to=TensorProto.FLOAT, name="/Cast"),
             helper.make_node("MatMul", ["as_float", "weight"], ["features"], name="/MatMul")],
            case, [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 4])],
            [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 2])], initializer=[weight]),
            opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        os.environ["FAKE_CONVERTER_CASE"] = case
        onnx.save_model(convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=True),
                        f"{args.save_onnx_path}.{case}.fp16.onnx")
"""

FAKE_CONVERTER = """
    # Does what onnxconverter_common's converter did to torch 2 exports: weights to float16, a cast to
    # float32 before the output, and torch's Cast(to=float) either kept as it was or dropped.
    import os
    from onnx import TensorProto, helper, numpy_helper
    def convert_float_to_float16(model, keep_io_types=False, disable_shape_infer=False):
        graph = model.graph
        weight = numpy_helper.to_array(graph.initializer[0]).astype("float16")
        graph.initializer[0].CopyFrom(numpy_helper.from_array(weight, "weight"))
        matmul = graph.node[1]
        matmul.output[0] = "features_fp16"
        graph.node.append(helper.make_node("Cast", ["features_fp16"], ["features"], to=TensorProto.FLOAT,
                                           name="/MatMul_cast_to_features"))
        if os.environ["FAKE_CONVERTER_CASE"] == "kept":
            graph.node[0].input[0] = "image_fp16"
            graph.node.insert(0, helper.make_node("Cast", ["image"], ["image_fp16"], to=TensorProto.FLOAT16,
                                                  name="graph_input_cast0"))
        else:
            matmul.input[0] = "image"
            graph.node.remove(graph.node[0])
        return model
"""


def test_export_shim_adapts_torch_2_and_new_onnxmltools(
    tmp_path: Path, fake_cn_clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter = fake_cn_clip.parents[1] / "deploy" / "pytorch_to_onnx.py"
    exporter.write_text(textwrap.dedent(FAKE_TORCH_EXPORTER))
    shims = tmp_path / "shims"  # only the exporter's process sees these stand-ins
    files = {
        "torch/__init__.py": "__version__ = '2.8.0+cpu'\n",
        "torch/onnx/__init__.py": (
            "import json\n"
            "def export(model, args, f, opset_version=None, dynamo=True, **kwargs):\n"
            "    record = {'opset_version': opset_version, 'dynamo': dynamo}\n"
            "    json.dump(record, open(f + '.export.json', 'w'))\n"
        ),
        "onnxmltools/__init__.py": "__version__ = '1.16.0'\n",
        "onnxmltools/utils/__init__.py": (
            "def convert_float_to_float16(*args, **kwargs):\n"
            "    raise NotImplementedError('Please use from onnxconverter_common.float16 import ...')\n"
        ),
        "onnxconverter_common/__init__.py": "",
        "onnxconverter_common/float16.py": textwrap.dedent(FAKE_CONVERTER),
    }
    for name, text in files.items():
        (shims / name).parent.mkdir(parents=True, exist_ok=True)
        (shims / name).write_text(text)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fake_cn_clip.parents[2]), str(shims)]))
    checkpoint = tmp_path / "ckpt.pt"
    checkpoint.write_bytes(b"x")
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="no complete model pair"):  # the stand-in writes no CLIP models
        export_variant("ViT-B-16", checkpoint, output_dir=out)
    assert json.loads((out / "vit-b-16.export.json").read_text()) == {"opset_version": 14, "dynamo": False}
    image = np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)
    expected = image @ (np.arange(8, dtype=np.float32).reshape(4, 2) / 8)
    for case in ("kept", "dropped"):
        session = OnnxSession(out / f"vit-b-16.{case}.fp16.onnx", ["CPUExecutionProvider"])
        assert np.allclose(session.run({"image": image})["features"], expected, atol=1e-2), case


# -- help -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["list"], ["verify"], ["export"]])
def test_every_command_is_documented(command: list[str]) -> None:
    result = invoke(*command, "-h")
    assert result.exit_code == 0
    assert "Example" in result.output and "immich-search models" in result.output
