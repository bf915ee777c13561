"""Torch and ONNX Runtime predictors agree, give probabilities, and pick devices honestly."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import segmentation_models_pytorch as smp
import torch

from cytoreview.errors import ConfigError
from cytoreview.inference import onnx_export
from cytoreview.inference.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAME,
    export_onnx,
    onnx_gpu_available,
    onnx_providers,
)
from cytoreview.inference.predictors import (
    OnnxPredictor,
    Predictor,
    TorchPredictor,
)
from cytoreview.models.devices import describe_device

EXPORT_SIZE = 64
SHAPES = [(64, 64), (96, 128)]
BATCHES = [1, 2]
CLASSES = 3

needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")


def make_unet() -> torch.nn.Module:
    torch.manual_seed(0)
    return smp.Unet("resnet18", encoder_weights=None, in_channels=3, classes=CLASSES).eval()


def random_batch(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, h, w)).astype(np.float32)


@pytest.fixture(scope="module")
def unet() -> torch.nn.Module:
    return make_unet()


@pytest.fixture(scope="module")
def onnx_bytes(unet: torch.nn.Module) -> bytes:
    # One export serves every size and batch below: the axes must really be dynamic.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the exporter's known noise must be silenced inside
        return export_onnx(unet, EXPORT_SIZE)


@pytest.fixture(scope="module")
def torch_predictor(unet: torch.nn.Module) -> TorchPredictor:
    return TorchPredictor(unet, device="cpu")


@pytest.fixture(scope="module")
def onnx_predictor(onnx_bytes: bytes) -> OnnxPredictor:
    return OnnxPredictor(onnx_bytes, device="cpu")


@pytest.fixture
def fresh_gpu_cache():
    onnx_gpu_available.cache_clear()
    yield
    onnx_gpu_available.cache_clear()


def test_export_gives_checked_onnx_with_named_dynamic_axes(onnx_bytes: bytes) -> None:
    assert isinstance(onnx_bytes, bytes)
    proto = onnx.load_from_string(onnx_bytes)
    onnx.checker.check_model(proto)
    (inp,) = proto.graph.input
    (out,) = proto.graph.output
    assert (inp.name, out.name) == (INPUT_NAME, OUTPUT_NAME)
    for value in (inp, out):
        dims = value.type.tensor_type.shape.dim
        assert len(dims) == 4
        assert all(dims[i].dim_param and not dims[i].dim_value for i in (0, 2, 3))
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.graph.node[-1].op_type == "Softmax"


@pytest.mark.parametrize("n", BATCHES)
@pytest.mark.parametrize(("h", "w"), SHAPES)
def test_torch_and_onnx_agree(
    torch_predictor: TorchPredictor, onnx_predictor: OnnxPredictor, n: int, h: int, w: int
) -> None:
    batch = random_batch(n, h, w, seed=n * 1000 + h + w)
    ref = torch_predictor(batch)
    got = onnx_predictor(batch)
    assert ref.shape == got.shape == (n, CLASSES, h, w)
    assert got.dtype == np.float32
    assert np.abs(ref - got).max() < 1e-4
    # Random inputs give a non-trivial prediction, so agreement is not agreement on a constant.
    assert ref.std() > 1e-3


@pytest.mark.parametrize("which", ["torch", "onnx"])
def test_outputs_are_probabilities(
    torch_predictor: TorchPredictor, onnx_predictor: OnnxPredictor, which: str
) -> None:
    predictor = torch_predictor if which == "torch" else onnx_predictor
    assert isinstance(predictor, Predictor)
    probs = predictor(random_batch(2, 96, 128))
    assert probs.min() >= 0.0
    assert probs.max() <= 1.0
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_torch_predictor_on_cpu_returns_float32_numpy(torch_predictor: TorchPredictor) -> None:
    probs = torch_predictor(random_batch(2, 64, 64).astype(np.float64))
    assert isinstance(probs, np.ndarray)
    assert probs.dtype == np.float32
    assert probs.flags.c_contiguous
    assert torch_predictor.torch_device.type == "cpu"
    assert torch_predictor.device.startswith("CPU (torch, ")


def test_onnx_predictor_describes_cpu_and_threads(onnx_bytes: bytes) -> None:
    predictor = OnnxPredictor(onnx_bytes, device="cpu", threads=1)
    assert predictor.device == "CPU (onnxruntime fp32, 1 threads)"
    assert predictor._session.get_providers() == ["CPUExecutionProvider"]


def test_predictors_reject_a_batch_of_the_wrong_rank(
    torch_predictor: TorchPredictor, onnx_predictor: OnnxPredictor
) -> None:
    image = random_batch(1, 64, 64)[0]
    for predictor in (torch_predictor, onnx_predictor):
        with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
            predictor(image)


def test_onnx_predictor_takes_bytes_never_a_path(tmp_path) -> None:
    with pytest.raises(TypeError, match="must be bytes"):
        OnnxPredictor(str(tmp_path / "model.onnx"), device="cpu")  # type: ignore[arg-type]


def test_export_leaves_the_callers_model_alone() -> None:
    model = make_unet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    export_onnx(model, 32)
    assert model.training
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("size", [0, 48, -32])
def test_export_rejects_sizes_the_unet_cannot_take(unet: torch.nn.Module, size: int) -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        export_onnx(unet, size)


def test_onnx_providers_cpu_and_unknown() -> None:
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="valid: auto, cpu, cuda"):
        onnx_providers("tpu")


@needs_no_gpu
def test_onnx_providers_without_gpu(fresh_gpu_cache) -> None:
    assert onnx_providers("auto") == ["CPUExecutionProvider"]
    with pytest.raises(ConfigError, match="cannot use a CUDA GPU"):
        onnx_providers("cuda")


@needs_no_gpu
def test_listed_cuda_provider_without_a_working_gpu_is_not_available(
    fresh_gpu_cache,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # onnxruntime-gpu lists CUDA even here; pretend torch sees a GPU so only the real probe
    # session stands between the list and a wrong "True".
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider"])
    capfd.readouterr()
    with caplog.at_level("WARNING", logger=onnx_export.__name__):
        assert onnx_gpu_available() is False
    # ORT's own multi-line provider error stays off the terminal; one logged line says it.
    assert capfd.readouterr().err == ""
    assert "cannot use the CUDA GPU" in caplog.text
    with pytest.raises(ConfigError, match="cannot use a CUDA GPU"):
        onnx_providers("cuda")


def test_gpu_answer_is_cached(fresh_gpu_cache, monkeypatch: pytest.MonkeyPatch) -> None:
    first = onnx_gpu_available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: not first)
    monkeypatch.setattr(onnx_export, "_cuda_session_works", lambda: not first)
    assert onnx_gpu_available() is first


def test_describe_cpu_device() -> None:
    assert describe_device(torch.device("cpu")) == f"CPU ({torch.get_num_threads()} threads)"
