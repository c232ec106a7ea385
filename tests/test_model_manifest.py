"""The model manifest: cn-clip's variants, file names, checkpoints; the model directory layout."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import platformdirs
import pytest

from immich_search.errors import ConfigError
from immich_search.runtime.manifest import (
    MODEL_DIR_ENV,
    _read_manifest_text,
    default_model_dir,
    load_manifest,
    parse_manifest,
    present_precisions,
    variant_dir,
)
from immich_search.runtime.session import ModelError

# From cn-clip: cn_clip/clip/utils.py (_MODELS, _MODEL_INFO) and cn_clip/clip/model_configs/*.json.
CN_CLIP = {
    "RN50": (1024, 224, "rn50", "chinese-clip-rn50", "clip_cn_rn50.pt"),
    "ViT-B-16": (512, 224, "vit-b-16", "chinese-clip-vit-base-patch16", "clip_cn_vit-b-16.pt"),
    "ViT-L-14": (768, 224, "vit-l-14", "chinese-clip-vit-large-patch14", "clip_cn_vit-l-14.pt"),
    "ViT-L-14-336": (
        768,
        336,
        "vit-l-14-336",
        "chinese-clip-vit-large-patch14-336px",
        "clip_cn_vit-l-14-336.pt",
    ),
    "ViT-H-14": (1024, 224, "vit-h-14", "chinese-clip-vit-huge-patch14", "clip_cn_vit-h-14.pt"),
}


def raw_manifest() -> dict:
    return json.loads(_read_manifest_text())


def test_variants_match_cn_clip() -> None:
    manifest = load_manifest()
    assert list(manifest.variants) == list(CN_CLIP)
    assert manifest.default_arch == "ViT-B-16" and manifest.variant().arch == "ViT-B-16"
    assert [v.arch for v in manifest.variants.values() if v.default] == ["ViT-B-16"]
    for arch, (dim, size, prefix, name, checkpoint) in CN_CLIP.items():
        variant = manifest.variant(arch)
        assert (variant.embed_dim, variant.image_size, variant.file_prefix, variant.name) == (
            dim,
            size,
            prefix,
            name,
        )
        assert variant.context_length == 52
        assert variant.checkpoint.file == checkpoint
        assert variant.checkpoint.url == f"https://huggingface.co/OFA-Sys/{name}/resolve/main/{checkpoint}"
        assert variant.checkpoint.modelscope == f"https://www.modelscope.cn/models/AI-ModelScope/{name}"


def test_file_names_are_cn_clip_exporters() -> None:
    # pytorch_to_onnx.py: f"{save_onnx_path}.img.fp32.onnx", ".txt.fp16.onnx", ...
    # and the fp16 weights in "<file>.extra_file".
    for variant in load_manifest().variants.values():
        assert variant.precisions == ("fp32", "fp16")
        for precision in variant.precisions:
            for role, tag in (("image", "img"), ("text", "txt")):
                entry = variant.file(role, precision)
                assert entry.file == f"{variant.file_prefix}.{tag}.{precision}.onnx"
                has_extra = precision == "fp16" or (variant.arch == "ViT-H-14" and role == "image")
                assert entry.external_data == ((f"{entry.file}.extra_file",) if has_extra else ())


def test_checksums_are_real_or_null() -> None:
    manifest = load_manifest()
    assert manifest.vocab.sha256 == "45bbac6b341c319adc98a532532882e91a9cefc0329aa57bac9ae761c27b291c"
    assert manifest.vocab.size == 21128
    assert dict(manifest.vocab.special_ids) == {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102}
    for variant in manifest.variants.values():
        sums = [variant.checkpoint.sha256] + [
            variant.file(role, precision).sha256 for precision in variant.precisions for role in ("image", "text")
        ]
        assert all(value is None or re.fullmatch("[0-9a-f]{64}", value) for value in sums)


def test_tensor_names() -> None:
    manifest = load_manifest()
    assert (manifest.image_input, manifest.image_output) == ("image", "unnorm_image_features")
    assert (manifest.text_input, manifest.text_output) == ("text", "unnorm_text_features")


def test_variant_lookup() -> None:
    manifest = load_manifest()
    assert manifest.variant("vit-l-14-336").arch == "ViT-L-14-336"
    assert manifest.variant(" RN50 ").arch == "RN50"
    with pytest.raises(ConfigError, match="unknown cn-clip model 'ViT-B-32'.*ViT-B-16"):
        manifest.variant("ViT-B-32")
    variant = manifest.variant()
    with pytest.raises(ConfigError, match="no 'int8' files"):
        variant.file("image", "int8")
    with pytest.raises(ConfigError, match="unknown model role"):
        variant.file("audio", "fp32")
    assert variant.all_files("fp16") == [
        "vit-b-16.img.fp16.onnx",
        "vit-b-16.img.fp16.onnx.extra_file",
        "vit-b-16.txt.fp16.onnx",
        "vit-b-16.txt.fp16.onnx.extra_file",
    ]


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data.pop("variants"),
        lambda data: data["variants"]["RN50"].pop("embed_dim"),
        lambda data: data["variants"]["RN50"].__setitem__("embed_dim", "wide"),
        lambda data: data["vocab"].__setitem__("sha256", "not-a-checksum"),
        lambda data: data.__setitem__("default_arch", "ViT-Z"),
    ],
    ids=["no-variants", "no-dim", "bad-dim", "bad-sha", "bad-default"],
)
def test_invalid_manifest_is_a_model_error(damage) -> None:
    data = copy.deepcopy(raw_manifest())
    damage(data)
    with pytest.raises(ModelError, match="invalid model manifest"):
        parse_manifest(data)


def test_packaged_manifest_is_the_source_file() -> None:
    source = Path(__file__).resolve().parents[1] / "models" / "manifest.json"
    assert json.loads(source.read_text("utf-8")) == raw_manifest()


def test_default_model_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_model_dir({MODEL_DIR_ENV: str(tmp_path)}) == tmp_path
    assert default_model_dir({MODEL_DIR_ENV: "~/models"}) == Path.home() / "models"
    expected = Path(platformdirs.user_data_dir("immich-search")) / "models"
    assert default_model_dir({}) == expected
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path / "env"))
    assert default_model_dir() == tmp_path / "env"


def test_variant_dir_and_present_precisions(tmp_path: Path) -> None:
    variant = load_manifest().variant("ViT-B-16")
    assert variant_dir(tmp_path, variant) == tmp_path / "ViT-B-16"  # where an export would go
    (tmp_path / "vit-b-16.img.fp16.onnx").touch()
    assert variant_dir(tmp_path, variant) == tmp_path  # files lying flat in the model directory
    assert present_precisions(tmp_path, variant) == []
    (tmp_path / "vit-b-16.txt.fp16.onnx").touch()
    assert present_precisions(tmp_path, variant) == ["fp16"]
    (tmp_path / "ViT-B-16").mkdir()
    assert variant_dir(tmp_path, variant) == tmp_path / "ViT-B-16"  # the variant folder wins
