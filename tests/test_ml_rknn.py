"""NPU and GPU selection: ``--device rknn`` with a stand-in ``rknnlite`` (the real API, tiny ONNX models
inside the ``.rknn`` files), one runtime per NPU core, used by ``ml`` and by every command loading cn-clip;
``--device cuda`` without onnxruntime-gpu refused clearly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from immich_search.cli import cli
from immich_search.errors import ConfigError
from immich_search.ml.app import build_app
from immich_search.ml.clip import ClipService
from immich_search.ml.services import MlServices, make_pool
from immich_search.runtime.backend import (
    DEVICE_ENV,
    NPU_CORES_ENV,
    load_clip,
    model_concurrency,
    onnx_providers,
    parse_npu_cores,
)
from immich_search.runtime.model import ClipModel
from immich_search.runtime.session import CUDA_PROVIDER, ModelError, available_onnx_providers
from tests.ml_fixtures import RED, solid_jpeg, tiny_clip_dir

STANDIN = Path(__file__).parent / "rknnlite_standin"


@pytest.fixture
def rknnlite(monkeypatch):
    monkeypatch.syspath_prepend(str(STANDIN))
    from rknnlite import api

    api.reset_log()
    yield api
    api.reset_log()


@pytest.fixture
def npu_model_dir(tmp_path):
    """The tiny ViT-B-16 as ONNX and, beside it, the same files as "converted" .rknn models."""
    tiny_clip_dir(tmp_path)
    for onnx_file in (tmp_path / "ViT-B-16").glob("*.onnx"):
        shutil.copy(onnx_file, onnx_file.with_suffix(".rknn"))
    return tmp_path


def test_npu_cores_parse():
    assert parse_npu_cores(None) == (0, 1, 2)
    assert parse_npu_cores("0,2") == (0, 2)
    assert parse_npu_cores("auto") is None
    for bad in ("0,0", "x", "9", ","):
        with pytest.raises(ConfigError):
            parse_npu_cores(bad)


def test_rknn_vectors_equal_onnx_ones(rknnlite, npu_model_dir):
    onnx = ClipModel.load(npu_model_dir, "ViT-B-16", providers=["CPUExecutionProvider"])
    npu = load_clip(npu_model_dir, "ViT-B-16", device="rknn", npu_cores=(0, 1, 2))
    np.testing.assert_allclose(npu.encode_texts(["红"]), onnx.encode_texts(["红"]), atol=1e-6)
    assert npu.image_encoder.session.instance_count == 3
    assert set(rknnlite.LOG["calls"]) == {2**0}  # one call so far, on the first free core (mask NPU_CORE_0)


def test_ml_spreads_requests_over_three_npu_cores_in_parallel(rknnlite, npu_model_dir, monkeypatch):
    monkeypatch.setenv("RKNNLITE_STANDIN_DELAY_S", "0.1")
    model = load_clip(npu_model_dir, "ViT-B-16", device="rknn", npu_cores=(0, 1, 2))
    concurrency = model_concurrency("rknn", (0, 1, 2))
    assert concurrency == 3
    services = MlServices(clip=ClipService(model), ocr=None, pool=make_pool(concurrency))
    with TestClient(build_app(services)) as client:
        client.post(  # load the image model first, so that loading does not serialise the timed calls
            "/predict",
            files={
                "entries": (None, json.dumps({"clip": {"visual": {"modelName": "ViT-B-16__openai"}}})),
                "image": ("blob", solid_jpeg(RED), "image/jpeg"),
            },
        )
        rknnlite.reset_log()
        answers = []

        def call():
            response = client.post(
                "/predict",
                files={
                    "entries": (None, json.dumps({"clip": {"visual": {"modelName": "ViT-B-16__openai"}}})),
                    "image": ("blob", solid_jpeg(RED), "image/jpeg"),
                },
            )
            answers.append(response.status_code)

        threads = [threading.Thread(target=call) for _ in range(9)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert answers == [200] * 9
    log = rknnlite.LOG
    assert sorted(set(log["calls"])) == [1, 2, 4]  # NPU_CORE_0, _1 and _2 all worked
    assert log["peak"] == 3 and log["peak_masks"] == {1, 2, 4}  # three cores at the same moment
    assert log["released"] == 0 or log["released"] >= 3


def test_missing_rknn_files_say_what_to_do(rknnlite, tmp_path):
    tiny_clip_dir(tmp_path)  # ONNX only
    with pytest.raises(ModelError, match=r"vit-b-16\.img\.fp32\.rknn and vit-b-16\.txt\.fp32\.rknn"):
        load_clip(tmp_path, "ViT-B-16", device="rknn")


def test_rknn_without_rknnlite_is_a_clear_error(npu_model_dir):
    if any((Path(p) / "rknnlite").exists() for p in sys.path):
        pytest.skip("a real or stand-in rknnlite is importable here")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "immich_search.cli",
            "embed",
            "红",
            "--device",
            "rknn",
            "--clip-model-dir",
            str(npu_model_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
    )
    assert result.returncode == 1 and "rknn-toolkit-lite2" in result.stderr and "Traceback" not in result.stderr


def test_cli_device_option_reaches_the_loader_and_child_processes(npu_model_dir, monkeypatch):
    # `embed` loads cn-clip like sync and search do; the options travel through the environment, so
    # sync's spawned worker processes see them too. The stand-in module is found through PYTHONPATH.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(STANDIN), str(Path(__file__).parents[1])]),
        "RKNNLITE_STANDIN_DELAY_S": "0",
    }
    env.pop(DEVICE_ENV, None)
    env.pop(NPU_CORES_ENV, None)
    code = (
        "import os, sys\n"
        "from click.testing import CliRunner\n"
        "from immich_search.cli import cli\n"
        "from rknnlite import api\n"
        f"r = CliRunner().invoke(cli, ['embed', '红', '--device', 'rknn', '--npu-cores', '1,2', "
        f"'--clip-model-dir', {str(npu_model_dir)!r}])\n"
        "assert r.exit_code == 0, r.output\n"
        "env = os.environ\n"
        "print(env['IMMICH_SEARCH_DEVICE'], env['IMMICH_SEARCH_NPU_CORES'], sorted(set(api.LOG['calls'])))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "rknn 1,2 [2]"  # NPU_CORE_1 (mask 2) ran the text model


def test_cuda_needs_onnxruntime_gpu():
    if CUDA_PROVIDER in available_onnx_providers():
        assert onnx_providers("cuda") == [CUDA_PROVIDER, "CPUExecutionProvider"]
        return
    with pytest.raises(ConfigError, match="install onnxruntime-gpu"):
        onnx_providers("cuda")
    assert onnx_providers("auto") == ["CPUExecutionProvider"]
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]


def test_cli_refuses_cuda_without_the_gpu_build(tmp_path):
    if CUDA_PROVIDER in available_onnx_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    tiny_clip_dir(tmp_path)
    result = CliRunner().invoke(cli, ["embed", "红", "--device", "cuda", "--clip-model-dir", str(tmp_path)])
    os.environ.pop(DEVICE_ENV, None)
    assert result.exit_code == 1 and "onnxruntime-gpu" in result.output
