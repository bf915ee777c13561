"""int8 quantisation of the segmenter: what it is calibrated on, and how close it stays to fp32."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from cytoreview.data.transforms import IMAGENET_MEAN, IMAGENET_STD, to_tensor_layout
from cytoreview.inference.cpu_support import (
    bf16_support,
    int8_reduce_range,
    parse_cpu_flags,
)
from cytoreview.inference.onnx_export import export_onnx
from cytoreview.inference.precision_gate import MAX_DICE_LOSS, gate, mask_agreement
from cytoreview.inference.predictors import OnnxPredictor
from cytoreview.inference.quantize import calibration_batches, prepare_graph, quantize_int8
from cytoreview.inference.segment import SegmenterSpec, segment_images
from cytoreview.models.segmenters import build_unet
from tests.inference.int8_models import grey_cell, grey_cells, grey_net_onnx

SPEC = SegmenterSpec(input_size=64, tile_threshold=1024)

#: The random resnet18 U-Net below (seed 0), int8 against fp32 on letterboxed cells it was not
#: calibrated on (measured, ONNX Runtime 1.31, AVX512-VNNI): largest probability change 0.025
#: to 0.027, mean change 0.0029 to 0.0030 (seeds 1 and 2: up to 0.071 and 0.0067). A random
#: U-Net labels nearly everything cytoplasm, so its probabilities, not its masks, are compared;
#: the bounds are about twice the measure. Inputs unlike the calibration data move more: a
#: native-resolution 128 px tile changed by up to 0.12 (mean 0.013), which is why calibration
#: takes the tiles of large fields too.
UNET_MAX_PROB_CHANGE = 0.06
UNET_MEAN_PROB_CHANGE = 0.006
#: GreyNet's masks, int8 against fp32, on 12 held-out cells: Dice loss per class 0.0006 to
#: 0.0015 (mean over images, 4 seeds), worst single image 0.0064.
GREY_MAX_DICE_LOSS = 0.003


@pytest.fixture(scope="module")
def unet_pair() -> tuple[bytes, bytes]:
    torch.manual_seed(0)
    fp32 = export_onnx(build_unet("resnet18").eval(), SPEC.input_size)
    return fp32, quantize_int8(fp32, calibration_batches(grey_cells(12, seed=1), SPEC))


@pytest.fixture(scope="module")
def grey_pair() -> tuple[bytes, bytes]:
    fp32 = grey_net_onnx(SPEC.input_size)
    return fp32, quantize_int8(fp32, calibration_batches(grey_cells(12, seed=1), SPEC))


def test_calibration_sees_exactly_what_inference_feeds() -> None:
    spec = SegmenterSpec(input_size=64, tile_threshold=100, tile_overlap=16)
    images = [grey_cell(50, 70, 0), grey_cell(90, 60, 1), grey_cell(150, 130, 2)]  # last: tiled
    fed: list[np.ndarray] = []

    def spy(batch: np.ndarray) -> np.ndarray:
        fed.append(batch.copy())
        return np.full((len(batch), 3, *batch.shape[2:]), 1 / 3, np.float32)

    segment_images(images, spy, spec)
    batches = calibration_batches(images, spec)
    assert [b.shape for b in batches] == [b.shape for b in fed]
    assert batches[0].shape == (2, 3, 64, 64) and len(batches) > 1  # crops, then tiles
    for got, want in zip(batches, fed, strict=True):
        np.testing.assert_array_equal(got, want)
    limited = calibration_batches(images, spec, limit=3)
    assert sum(len(b) for b in limited) == 3


def test_int8_unet_keeps_the_interface_and_stays_close_to_fp32(unet_pair) -> None:
    fp32, int8 = unet_pair
    reference = OnnxPredictor(fp32, device="cpu")
    candidate = OnnxPredictor(int8, device="cpu", precision="int8")
    assert candidate.device.startswith("CPU (onnxruntime int8,")
    assert len(int8) < len(fp32) / 3  # int8 weights
    held_out = calibration_batches(grey_cells(6, seed=2), SPEC)[0]
    # Dynamic axes survive: other batch sizes, and a 128 px tile although calibrated at 64 px.
    tile = to_tensor_layout(grey_cell(128, 128, 7)[None], IMAGENET_MEAN, IMAGENET_STD)
    for batch in (held_out[:1], held_out, tile):
        want, got = reference(batch), candidate(batch)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)  # the softmax stays fp32
        if batch is not tile:
            change = np.abs(got - want)
            assert change.max() < UNET_MAX_PROB_CHANGE, change.max()
            assert change.mean() < UNET_MEAN_PROB_CHANGE, change.mean()


def test_int8_masks_agree_with_fp32_masks(grey_pair) -> None:
    fp32, int8 = grey_pair
    result = gate(
        grey_cells(12, seed=3),
        OnnxPredictor(fp32, device="cpu"),
        OnnxPredictor(int8, device="cpu", precision="int8"),
        SPEC,
    )
    assert result.passed and result.max_dice_loss == MAX_DICE_LOSS
    assert max(result.agreement.dice_loss.values()) <= GREY_MAX_DICE_LOSS, result.to_dict()
    assert result.uncertainty_abs_diff < 1e-3
    assert set(result.to_dict()["dice_loss"]) == {"cytoplasm", "nucleus"}


def test_a_tighter_limit_fails_the_gate(grey_pair) -> None:
    fp32, int8 = grey_pair
    args = (grey_cells(4, seed=3), OnnxPredictor(fp32, "cpu"), OnnxPredictor(int8, "cpu"), SPEC)
    assert not gate(*args, max_dice_loss=-1.0).passed
    assert gate(*args, max_dice_loss=1.0).passed


def test_mask_agreement_per_class() -> None:
    ref = np.zeros((10, 10), np.uint8)
    ref[2:8, 2:8] = 1
    ref[4:6, 4:6] = 2
    cand = ref.copy()
    cand[2, 2:8] = 0  # 6 of 32 cytoplasm pixels lost
    agreement = mask_agreement([ref, ref], [ref, cand])
    one = 1 - 2 * 26 / (32 + 26)
    assert agreement.dice_loss["cytoplasm"] == pytest.approx(one / 2)
    assert agreement.worst_image_loss["cytoplasm"] == pytest.approx(one)
    assert agreement.dice_loss["nucleus"] == 0.0
    empty = np.zeros((4, 4), np.uint8)
    assert mask_agreement([empty], [empty]).dice_loss == {"cytoplasm": 0.0, "nucleus": 0.0}
    with pytest.raises(ValueError, match="one length"):
        mask_agreement([ref], [])


def test_no_calibration_data_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one batch"):
        quantize_int8(b"unused", [])


def test_cpu_flags_and_the_int8_range() -> None:
    text = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512_vnni amx_bf16\n\nprocessor\t: 1\n"
    flags = parse_cpu_flags(text)
    assert {"avx2", "avx512_vnni", "amx_bf16"} <= flags and "processor" not in flags
    assert parse_cpu_flags("Features\t: fp asimd bf16\n") == {"fp", "asimd", "bf16"}
    assert parse_cpu_flags("nothing here") == frozenset()
    assert not int8_reduce_range(flags, "x86_64")  # VNNI: full 8-bit weights
    assert int8_reduce_range(frozenset({"avx2"}), "x86_64")  # AVX2 only: 7-bit weights
    assert int8_reduce_range(frozenset(), "x86_64")  # unknown: the safe choice
    assert not int8_reduce_range(frozenset(), "aarch64")


def test_bf16_is_measured_not_assumed() -> None:
    support = bf16_support()
    record = support.to_dict()
    assert set(record) >= {"cpu", "cpu_flags", "onnxruntime_cpu", "reason"}
    assert record["cpu"] == bool(support.cpu_flags) and support.reason
    if not support.onnxruntime_cpu:  # ONNX Runtime 1.31's CPU provider: no bfloat16 Conv
        assert "cannot run a bfloat16 Conv" in support.reason


def _ops(onnx_bytes: bytes) -> set[str]:
    return {n.op_type for n in onnx.load_from_string(onnx_bytes).graph.node}


def test_graph_rewrites_keep_the_unet_outputs(unet_pair) -> None:
    fp32, _ = unet_pair
    probe = calibration_batches(grey_cells(2, seed=4), SPEC)[0]
    rewritten, applied = prepare_graph(fp32, probe)
    assert applied == ("softmax_by_parts", "upsample_by_two")
    assert {"Softmax", "Shape"} & _ops(fp32) and not {"Softmax", "Shape"} & _ops(rewritten)
    reference, fast = OnnxPredictor(fp32, device="cpu"), OnnxPredictor(rewritten, device="cpu")
    tile = to_tensor_layout(grey_cell(96, 160, 8)[None], IMAGENET_MEAN, IMAGENET_STD)
    for batch in (probe, tile):  # other sides (multiples of 32) still upsample by exactly 2
        np.testing.assert_allclose(fast(batch), reference(batch), atol=1e-5)


class _Quadruple(torch.nn.Module):
    """Upsamples by 4 (sized from the input's shape) and pools back: not a U-Net decoder."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        big = torch.nn.functional.interpolate(x, size=(x.shape[2] * 4, x.shape[3] * 4))
        return torch.nn.functional.avg_pool2d(big, 4)


def test_graph_rewrites_that_change_the_outputs_are_not_applied() -> None:
    fp32 = export_onnx(_Quadruple(), 64)
    probe = calibration_batches(grey_cells(1, seed=4), SPEC)[0]
    assert prepare_graph(fp32, probe) == (fp32, ())
