"""cn-clip runtime: preprocessing, onnxruntime/RKNN sessions, encoders and ClipModel, on tiny real models."""

from __future__ import annotations

import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from immich_search.errors import ConfigError, ImmichSearchError
from immich_search.runtime.model import (
    ClipImageEncoder,
    ClipModel,
    ClipTextEncoder,
    image_signature,
    l2_normalise,
    text_signature,
)
from immich_search.runtime.preprocess import CLIP_MEAN, CLIP_STD, preprocess_image, preprocess_images
from immich_search.runtime.session import (
    CPU_PROVIDER,
    BackendUnavailableError,
    ModelError,
    OnnxSession,
    RknnSession,
    TensorSpec,
    available_onnx_providers,
    default_onnx_providers,
)
from immich_search.runtime.tokenizer import ClipTokenizer
from tests.clip_fixtures import CN_CLIP_IDS, TinyClip, write_corrupt_model, write_vocab

CPU = [CPU_PROVIDER]
RED, GREEN, BLUE, GREY = (255, 0, 0), (0, 255, 0), (0, 0, 255), (128, 128, 128)


@pytest.fixture(autouse=True)
def no_installed_cn_clip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the vocabularies they write, even where cn_clip happens to be installed."""
    monkeypatch.setattr("immich_search.runtime.tokenizer.cn_clip_vocab_path", lambda: None)


@pytest.fixture(scope="module")
def tiny() -> TinyClip:
    return TinyClip(embed_dim=8)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> ClipTokenizer:
    return ClipTokenizer.from_file(write_vocab(tmp_path_factory.mktemp("vocab") / "vocab.txt"))


def solid(rgb: tuple[int, int, int], size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    return Image.new("RGB", size, rgb).convert(mode)


class CountingSession:
    """A real OnnxSession that counts calls (to see looping versus batching)."""

    def __init__(self, session: OnnxSession) -> None:
        self.inner = session
        self.path, self.inputs, self.outputs = session.path, session.inputs, session.outputs
        self.batches: list[int] = []

    def run(self, feeds, output_names=None):
        self.batches.append(next(iter(feeds.values())).shape[0])
        return self.inner.run(feeds, output_names)


# -- preprocessing ------------------------------------------------------------------------------------


def test_preprocess_constants_are_cn_clips() -> None:
    assert CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert CLIP_STD == (0.26862954, 0.26130258, 0.27577711)


@pytest.mark.parametrize("size", [224, 336])
def test_preprocess_shape_dtype_and_values(size: int) -> None:
    pixels = preprocess_image(solid(RED, (640, 480)), size)
    assert pixels.shape == (1, 3, size, size)
    assert pixels.dtype == np.float32
    expected = (np.array([1.0, 0.0, 0.0], np.float32) - np.array(CLIP_MEAN, np.float32)) / np.array(
        CLIP_STD, np.float32
    )
    for channel in range(3):  # channel 0 is red: RGB order, not BGR
        assert np.all(pixels[0, channel] == expected[channel])


def test_preprocess_resizes_without_crop() -> None:
    # Left half red, right half blue, 4:1: a centre crop would lose the sides; a plain resize keeps both.
    image = Image.new("RGB", (400, 100), BLUE)
    image.paste(RED, (0, 0, 200, 100))
    pixels = preprocess_image(image, 224)
    red = TinyClip.normalised_colour(RED)
    blue = TinyClip.normalised_colour(BLUE)
    assert np.allclose(pixels[0, :, 100, 5], red)
    assert np.allclose(pixels[0, :, 100, 218], blue)
    # Exactly PIL's bicubic resize, then /255 and normalisation.
    manual = np.asarray(image.resize((224, 224), Image.Resampling.BICUBIC), np.float32) / np.float32(255)
    manual = ((manual - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)).transpose(2, 0, 1)
    assert np.array_equal(pixels[0], manual)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I", "1", "LA"])
def test_preprocess_accepts_any_mode(mode: str) -> None:
    pixels = preprocess_image(solid(GREY, mode=mode), 224)
    assert pixels.shape == (1, 3, 224, 224)
    assert np.isfinite(pixels).all()


def test_preprocess_batch() -> None:
    batch = preprocess_images([solid(RED), solid(BLUE, (10, 300))], 224)
    assert batch.shape == (2, 3, 224, 224)
    assert preprocess_images([], 336).shape == (0, 3, 336, 336)
    with pytest.raises(ValueError):
        preprocess_image(solid(RED), 0)


# -- sessions -----------------------------------------------------------------------------------------


def test_onnx_session_signature_and_run(tmp_path: Path, tiny: TinyClip) -> None:
    session = OnnxSession(tiny.write_image_model(tmp_path / "img.onnx", batch=None), CPU)
    assert session.inputs == (TensorSpec("image", "float32", (None, 3, 224, 224)),)
    assert session.outputs == (TensorSpec("unnorm_image_features", "float32", (None, 8)),)
    assert session.providers == CPU
    out = session.run({"image": np.zeros((2, 3, 224, 224), np.float32)})
    assert list(out) == ["unnorm_image_features"]
    assert out["unnorm_image_features"].shape == (2, 8)


def test_onnx_session_errors(tmp_path: Path, tiny: TinyClip) -> None:
    with pytest.raises(ModelError, match="not found"):
        OnnxSession(tmp_path / "missing.onnx", CPU)
    with pytest.raises(ModelError, match="cannot load ONNX model"):
        OnnxSession(write_corrupt_model(tmp_path / "corrupt.onnx"), CPU)
    with pytest.raises(ConfigError, match="NoSuchExecutionProvider"):
        OnnxSession(tiny.write_image_model(tmp_path / "img.onnx"), ["NoSuchExecutionProvider"])
    session = OnnxSession(tmp_path / "img.onnx", CPU)
    with pytest.raises(ModelError, match="inference with img.onnx failed"):
        session.run({"image": np.zeros((1, 3, 10, 10), np.float32)})


def test_onnx_session_external_data(tmp_path: Path, tiny: TinyClip) -> None:
    path = tiny.write_image_model(tmp_path / "m.img.fp16.onnx", external_data=True)
    extra = tmp_path / "m.img.fp16.onnx.extra_file"
    assert extra.is_file()
    assert OnnxSession(path, CPU).inputs[0].name == "image"
    extra.unlink()
    with pytest.raises(ModelError, match="extra_file"):
        OnnxSession(path, CPU)


def test_default_providers() -> None:
    providers = default_onnx_providers()
    assert providers[-1] == CPU_PROVIDER
    assert ("CUDAExecutionProvider" in providers) == ("CUDAExecutionProvider" in available_onnx_providers())


def test_errors_are_user_facing() -> None:
    assert issubclass(ModelError, ImmichSearchError)
    assert issubclass(BackendUnavailableError, ImmichSearchError)


# -- encoders -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, None], ids=["fixed-batch", "dynamic-batch"])
def test_image_encoder_features(tmp_path: Path, tiny: TinyClip, batch: int | None) -> None:
    session = CountingSession(OnnxSession(tiny.write_image_model(tmp_path / "img.onnx", batch=batch), CPU))
    encoder = ClipImageEncoder(session, embed_dim=8, max_batch=2)
    assert encoder.image_size == 224 and encoder.embed_dim == 8
    colours = [RED, GREEN, BLUE, GREY, RED]
    features = encoder.encode_images([solid(colour) for colour in colours])
    assert features.shape == (5, 8) and features.dtype == np.float32
    assert np.allclose(np.linalg.norm(features, axis=1), 1.0, atol=1e-6)
    for row, colour in zip(features, colours, strict=True):
        assert np.allclose(row, tiny.expected_image_feature(colour), atol=1e-4)
    # A batch-1 export is called once per image; a dynamic one in chunks of max_batch.
    assert session.batches == ([1] * 5 if batch == 1 else [2, 2, 1])
    assert encoder.encode_images([]).shape == (0, 8)


@pytest.mark.parametrize("batch", [1, None], ids=["fixed-batch", "dynamic-batch"])
def test_text_encoder_features(tmp_path: Path, tiny: TinyClip, tokenizer: ClipTokenizer, batch: int | None) -> None:
    session = CountingSession(OnnxSession(tiny.write_text_model(tmp_path / "txt.onnx", batch=batch), CPU))
    encoder = ClipTextEncoder(session, tokenizer, embed_dim=8)
    texts = ["飞机", "一只猫", "hello world", "图"]
    features = encoder.encode_texts(texts)
    assert features.shape == (4, 8) and features.dtype == np.float32
    for row, text in zip(features, texts, strict=True):
        assert np.allclose(row, tiny.expected_text_feature(tokenizer(text)[0]), atol=1e-5)
    assert session.batches == ([1] * 4 if batch == 1 else [4])
    assert np.allclose(encoder.encode_texts("飞机"), features[:1])
    assert encoder.encode_texts([]).shape == (0, 8)


def test_known_photo_is_nearest_to_known_text(tmp_path: Path, tokenizer: ClipTokenizer) -> None:
    tiny = TinyClip(embed_dim=8, seed=3)
    tiny.align(CN_CLIP_IDS["红"], RED)
    tiny.align(CN_CLIP_IDS["蓝"], BLUE)
    images = ClipImageEncoder(OnnxSession(tiny.write_image_model(tmp_path / "img.onnx"), CPU))
    texts = ClipTextEncoder(OnnxSession(tiny.write_text_model(tmp_path / "txt.onnx"), CPU), tokenizer)
    photos = images.encode_images([solid(GREEN), solid(RED), solid(BLUE), solid(GREY)])
    queries = texts.encode_texts(["红", "蓝"])
    similarity = queries @ photos.T
    assert similarity.argmax(axis=1).tolist() == [1, 2]
    assert np.allclose(similarity[0, 1], 1.0, atol=1e-4) and np.allclose(similarity[1, 2], 1.0, atol=1e-4)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"input_name": "pixel_values"}, r"expected one input image float32 \[1,3,224,224\]"),
        ({"input_dtype": np.float16}, "has type float16, expected float32"),
        ({"input_dtype": np.float64}, "has type float64, expected float32"),
        ({"output_name": "image_embeds"}, "no output 'unnorm_image_features'"),
        ({"batch": 2}, "batch size is fixed at 2"),
    ],
)
def test_image_encoder_rejects_wrong_signature(tmp_path: Path, tiny: TinyClip, options: dict, message: str) -> None:
    session = OnnxSession(tiny.write_image_model(tmp_path / "bad.onnx", **options), CPU)
    with pytest.raises(ModelError, match=message) as error:
        ClipImageEncoder(session, image_size=224, embed_dim=8)
    assert "bad.onnx" in str(error.value)


def test_image_size_checks(tmp_path: Path, tiny: TinyClip) -> None:
    session = OnnxSession(tiny.write_image_model(tmp_path / "img.onnx"), CPU)
    with pytest.raises(ModelError, match="axis 2 has size 224, expected 336"):
        ClipImageEncoder(session, image_size=336)
    dynamic = OnnxSession(tiny.write_image_model(tmp_path / "dyn.onnx", image_size=0, batch=None), CPU)
    with pytest.raises(ModelError, match="no fixed size"):
        ClipImageEncoder(dynamic)
    encoder = ClipImageEncoder(dynamic, image_size=336)
    assert encoder.encode_images([solid(RED)]).shape == (1, 8)
    with pytest.raises(ValueError, match="expected pixels"):
        encoder.encode_pixels(np.zeros((1, 3, 224, 224), np.float32))


def test_output_dimension_mismatch(tmp_path: Path) -> None:
    session = OnnxSession(TinyClip(embed_dim=16).write_image_model(tmp_path / "img.onnx"), CPU)
    with pytest.raises(ModelError, match="img.onnx: output has 16 dimensions, expected 8"):
        ClipImageEncoder(session, embed_dim=8)


def test_output_dim_learned_when_dynamic(tmp_path: Path, tiny: TinyClip) -> None:
    session = CountingSession(OnnxSession(tiny.write_image_model(tmp_path / "img.onnx"), CPU))
    session.outputs = (TensorSpec("unnorm_image_features", "float32", (1, None)),)  # as if undeclared
    encoder = ClipImageEncoder(session)
    assert encoder.embed_dim is None
    assert encoder.encode_images([solid(RED)]).shape == (1, 8)
    assert encoder.embed_dim == 8
    with pytest.raises(ModelError, match="returned 8 dimensions, expected 4"):
        ClipImageEncoder(session, embed_dim=4).encode_images([solid(RED)])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"input_name": "input_ids"}, "expected one input text int64"),
        ({"input_dtype": np.int32}, "has type int32, expected int64"),
        ({"context_length": 64}, "axis 1 has size 64, expected 52"),
        ({"output_name": "text_embeds"}, "no output 'unnorm_text_features'"),
    ],
)
def test_text_encoder_rejects_wrong_signature(
    tmp_path: Path, tiny: TinyClip, tokenizer: ClipTokenizer, options: dict, message: str
) -> None:
    session = OnnxSession(tiny.write_text_model(tmp_path / "bad.onnx", **options), CPU)
    with pytest.raises(ModelError, match=message):
        ClipTextEncoder(session, tokenizer)


def test_image_model_given_as_text_model(tmp_path: Path, tiny: TinyClip, tokenizer: ClipTokenizer) -> None:
    session = OnnxSession(tiny.write_image_model(tmp_path / "img.onnx"), CPU)
    with pytest.raises(ModelError, match="not a cn-clip text model"):
        ClipTextEncoder(session, tokenizer)


def test_l2_normalise() -> None:
    assert np.allclose(l2_normalise(np.array([[3.0, 4.0]])), [[0.6, 0.8]])
    with pytest.raises(ModelError, match="NaN"):
        l2_normalise(np.array([[np.nan, 1.0]]))
    with pytest.raises(ModelError, match="all-zero"):
        l2_normalise(np.zeros((1, 4)))


def test_signatures_describe_cn_clip_exports() -> None:
    image_in, image_out = image_signature(224, 512)
    assert image_in.describe() == "image float32 [1,3,224,224]"
    assert image_out.describe() == "unnorm_image_features float32 [1,512]"
    text_in, _ = text_signature(52, 512, batch=None)
    assert text_in.describe() == "text int64 [?,52]"


# -- ClipModel --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aligned() -> TinyClip:
    tiny = TinyClip(embed_dim=512, seed=7)  # ViT-B-16's dimension, so the manifest's checks apply
    tiny.align(CN_CLIP_IDS["红"], RED)
    tiny.align(CN_CLIP_IDS["蓝"], BLUE)
    return tiny


def test_clip_model_from_model_dir(tmp_path: Path, aligned: TinyClip) -> None:
    folder = aligned.write_model_dir(tmp_path)
    model = ClipModel.load(tmp_path, "vit-b-16", providers=CPU)
    assert model.name == "chinese-clip-vit-base-patch16" and model.embed_dim == 512
    assert model.precision == "fp32" and model.directory == folder
    assert model.image_path == folder / "vit-b-16.img.fp32.onnx"
    assert model.vocab_path == tmp_path / "vocab.txt"
    photos = model.encode_images([solid(RED), solid(BLUE), solid(GREY)])
    queries = model.encode_texts(["红", "蓝"])
    assert photos.shape == (3, 512) and queries.shape == (2, 512)
    assert (queries @ photos.T).argmax(axis=1).tolist() == [0, 1]


def test_clip_model_loads_encoders_lazily(tmp_path: Path, aligned: TinyClip) -> None:
    folder = aligned.write_model_dir(tmp_path)
    model = ClipModel.load(tmp_path, providers=CPU)  # the default variant: ViT-B-16
    (folder / "vit-b-16.img.fp32.onnx").unlink()
    assert model.encode_texts(["飞机"]).shape == (1, 512)  # the image model is never needed
    with pytest.raises(ModelError, match="not found"):
        _ = model.image_encoder


def test_clip_model_concurrent_first_use(tmp_path: Path, aligned: TinyClip) -> None:
    aligned.write_model_dir(tmp_path)
    model = ClipModel.load(tmp_path, providers=CPU)
    encoders: list[object] = []
    threads = [threading.Thread(target=lambda: encoders.append(model.image_encoder)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(encoder) for encoder in encoders}) == 1


def test_clip_model_precisions(tmp_path: Path, aligned: TinyClip) -> None:
    folder = aligned.write_model_dir(tmp_path, precisions=("fp16",))
    model = ClipModel.load(tmp_path, providers=CPU)
    assert model.precision == "fp16"
    assert model.encode_images([solid(RED)]).shape == (1, 512)
    with pytest.raises(ModelError, match=r"fp32 files missing .*vit-b-16.img.fp32.onnx"):
        ClipModel.load(tmp_path, precision="fp32", providers=CPU)
    with pytest.raises(ConfigError, match="no 'int8' files"):
        ClipModel.load(tmp_path, precision="int8", providers=CPU)
    (folder / "vit-b-16.txt.fp16.onnx.extra_file").unlink()
    broken = ClipModel.load(tmp_path, providers=CPU)
    with pytest.raises(ModelError, match="extra_file"):
        broken.encode_texts(["飞机"])


def test_clip_model_prefers_fp32_on_cpu(tmp_path: Path, aligned: TinyClip) -> None:
    aligned.write_model_dir(tmp_path, precisions=("fp16", "fp32"))
    assert ClipModel.load(tmp_path, providers=CPU).precision == "fp32"


def test_clip_model_flat_directory(tmp_path: Path, aligned: TinyClip) -> None:
    aligned.write_image_model(tmp_path / "vit-b-16.img.fp32.onnx")
    aligned.write_text_model(tmp_path / "vit-b-16.txt.fp32.onnx")
    write_vocab(tmp_path / "vocab.txt")
    model = ClipModel.load(tmp_path, providers=CPU)
    assert model.directory == tmp_path
    assert model.encode_texts(["红"]).shape == (1, 512)


def test_clip_model_missing_files(tmp_path: Path, aligned: TinyClip) -> None:
    with pytest.raises(ModelError, match=r"no cn-clip ViT-B-16 model in .*vit-b-16.img.fp32.onnx.*models export"):
        ClipModel.load(tmp_path, providers=CPU)
    with pytest.raises(ConfigError, match="unknown cn-clip model 'ViT-X'"):
        ClipModel.load(tmp_path, "ViT-X", providers=CPU)
    aligned.write_model_dir(tmp_path, vocab=False)
    with pytest.raises(ModelError, match="vocab.txt not found"):
        ClipModel.load(tmp_path, providers=CPU)


def test_clip_model_wrong_dimension(tmp_path: Path) -> None:
    small = TinyClip(embed_dim=8)
    small.write_image_model(tmp_path / "ViT-B-16" / "vit-b-16.img.fp32.onnx")
    small.write_text_model(tmp_path / "ViT-B-16" / "vit-b-16.txt.fp32.onnx")
    write_vocab(tmp_path / "vocab.txt")
    model = ClipModel.load(tmp_path, providers=CPU)
    with pytest.raises(ModelError, match="output has 8 dimensions, expected 512"):
        _ = model.image_encoder


# -- RKNN -----------------------------------------------------------------------------------------------


def test_rknn_missing_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rknnlite", None)
    monkeypatch.setitem(sys.modules, "rknnlite.api", None)
    inputs, outputs = image_signature(224, 8)
    with pytest.raises(BackendUnavailableError, match="rknn-toolkit-lite2"):
        RknnSession(tmp_path / "m.rknn", [inputs], [outputs])


class FakeRKNNLite:
    """Stands in for rknnlite.api.RKNNLite (Rockchip's runtime, absent here): records what it is told."""

    NPU_CORE_AUTO, NPU_CORE_0, NPU_CORE_1, NPU_CORE_2 = 0, 1, 2, 4
    created: list[FakeRKNNLite] = []
    fail_load = False

    def __init__(self, verbose: bool = False) -> None:
        self.core_mask = None
        self.released = False
        self.calls = 0
        FakeRKNNLite.created.append(self)

    def load_rknn(self, path: str) -> int:
        return -1 if FakeRKNNLite.fail_load else 0

    def init_runtime(self, core_mask: int = 0) -> int:
        self.core_mask = core_mask
        return 0

    def inference(self, inputs, data_format=None):
        self.calls += 1
        return [inputs[0].mean(axis=(2, 3)) @ np.ones((3, 8), np.float32)]

    def release(self) -> None:
        self.released = True


@pytest.fixture
def fake_rknnlite(monkeypatch: pytest.MonkeyPatch) -> type[FakeRKNNLite]:
    package = types.ModuleType("rknnlite")
    api = types.ModuleType("rknnlite.api")
    api.RKNNLite = FakeRKNNLite
    package.api = api
    monkeypatch.setitem(sys.modules, "rknnlite", package)
    monkeypatch.setitem(sys.modules, "rknnlite.api", api)
    FakeRKNNLite.created = []
    FakeRKNNLite.fail_load = False
    return FakeRKNNLite


def test_rknn_one_instance_per_core(tmp_path: Path, fake_rknnlite: type[FakeRKNNLite]) -> None:
    path = tmp_path / "vit-b-16.img.rknn"
    path.write_bytes(b"RKNN")
    inputs, outputs = image_signature(224, 8)
    session = RknnSession(path, [inputs], [outputs])
    assert session.instance_count == 3
    assert [runtime.core_mask for runtime in fake_rknnlite.created] == [1, 2, 4]
    encoder = ClipImageEncoder(session, embed_dim=8)
    features = encoder.encode_images([solid(RED), solid(BLUE), solid(GREY)])
    assert features.shape == (3, 8)
    assert sum(runtime.calls for runtime in fake_rknnlite.created) == 3
    session.close()
    assert all(runtime.released for runtime in fake_rknnlite.created)


def test_rknn_errors(tmp_path: Path, fake_rknnlite: type[FakeRKNNLite]) -> None:
    inputs, outputs = image_signature(224, 8)
    with pytest.raises(ModelError, match="not found"):
        RknnSession(tmp_path / "missing.rknn", [inputs], [outputs])
    path = tmp_path / "m.rknn"
    path.write_bytes(b"RKNN")
    with pytest.raises(ConfigError, match="NPU_CORE_7"):
        RknnSession(path, [inputs], [outputs], cores=[7])
    auto = RknnSession(path, [inputs], [outputs], cores=None)
    assert auto.instance_count == 1 and fake_rknnlite.created[-1].core_mask == 0
    with pytest.raises(ModelError, match="missing input"):
        auto.run({})
    fake_rknnlite.fail_load = True
    with pytest.raises(ModelError, match="could not load"):
        RknnSession(path, [inputs], [outputs])
    assert fake_rknnlite.created[-1].released
