"""The Residual SE U-Net plugin (cytoreview-chowdary): network, ONNX, and the core's workflows.

The network tests use tiny widths; the workflow tests train one small network for a few epochs
on a synthetic project at 64 px (module scope, shared) and drive the command line once.
"""

from __future__ import annotations

import copy
from importlib import metadata
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from cytoreview.cli.main import main
from cytoreview.data.synthetic import synth_dataset
from cytoreview.errors import ConfigError
from cytoreview.inference.onnx_export import export_onnx
from cytoreview.models.segmenters import build_segmenter, describe_segmenter
from cytoreview.plugin_api import catalog, find, reset_catalog
from cytoreview.plugin_api.discovery import ENTRY_POINT_GROUP, discover
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project
from cytoreview.types import Provenance
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.segmentation import (
    SegTrainRequest,
    evaluate_segmentation,
    load_predictor,
    segment_project,
    train_segmentation,
)
from tests.conftest import run_job, write_label_png, write_rgb_png

rse_unet = pytest.importorskip("cytoreview_chowdary.rse_unet")
from cytoreview_chowdary import __version__ as PLUGIN_VERSION  # noqa: E402, N812
from cytoreview_chowdary.rse_settings import RseUnetSettings  # noqa: E402

PLUGIN = "cytoreview-chowdary"
TINY = RseUnetSettings(base_channels=4, depth=3)

#: Measured on this synthetic set (base 8, 10 epochs of 2 steps at 64 px, seed 0): validation
#: nucleus Dice 0.10 after the first epoch, 0.80 at the best (last) one (cytoplasm 0.39, 0.75).
#: The bar leaves room for another CPU's arithmetic.
MIN_NUCLEUS_DICE = 0.6


def _net(settings: RseUnetSettings = TINY, classes: int = 3) -> torch.nn.Module:
    return rse_unet.RSE_UNET.build(settings, classes=classes, in_channels=3)


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("depth", "size"), [(3, (8, 8)), (3, (16, 40)), (4, (64, 48)), (2, (12, 20)), (5, (32, 64))]
)
def test_logits_have_the_input_size_for_any_multiple_of_two_to_the_depth(depth, size) -> None:
    model = _net(RseUnetSettings(base_channels=4, depth=depth)).eval()
    assert model.size_multiple == 2**depth
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 3, *size) and torch.isfinite(out).all()


def test_a_side_that_is_not_a_multiple_is_refused_with_the_multiple() -> None:
    with pytest.raises(ValueError, match="multiples of 8"):
        _net()(torch.randn(1, 3, 24, 20))


def test_the_method_follows_the_segmenter_protocol() -> None:
    from cytoreview.plugin_api.protocols import SegmenterMethod

    method = rse_unet.RSE_UNET
    assert isinstance(method, SegmenterMethod)
    # The method's multiple holds for every depth the settings allow.
    assert all(method.size_multiple % 2**d == 0 for d in range(2, 6))
    model = _net()
    whole, encoder = method.weight_targets(model)
    assert whole is model and encoder is model.encoder
    # A weights file holding the encoder alone (with the bridge) fits the encoder.
    assert set(encoder.state_dict()) == {
        k.removeprefix("encoder.") for k in model.state_dict() if k.startswith("encoder.")
    }


def test_se_blocks_add_weights_and_switch_off_for_the_ablation() -> None:
    with_se = _net(RseUnetSettings(base_channels=8, depth=3))
    without = _net(RseUnetSettings(base_channels=8, depth=3, use_se=False))
    assert _n_params(with_se) > _n_params(without)
    se = [m for m in with_se.modules() if isinstance(m, rse_unet.SqueezeExcitation)]
    assert len(se) == 2 * 3 + 1  # every encoder and decoder module and the bridge
    assert not [m for m in without.modules() if isinstance(m, rse_unet.SqueezeExcitation)]
    # The weights left out are exactly the SE blocks' fully connected layers.
    assert _n_params(with_se) - _n_params(without) == sum(_n_params(m) for m in se)
    # The narrowest level still squeezes to the minimum hidden width, not to 8 / 16 = 0.
    assert se[0].reduce.out_channels == rse_unet.MIN_SE_HIDDEN


def test_se_position_chooses_what_the_weights_scale() -> None:
    torch.manual_seed(0)
    residual = rse_unet.ResidualSEModule(8, 8, stride=1, se_reduction=2, use_se=True)
    output = copy.deepcopy(residual)
    output.se_on_residual = False
    residual.eval(), output.eval()
    x = torch.randn(2, 8, 8, 8)
    with torch.no_grad():
        branch = residual.bn2(residual.conv2(torch.relu(residual.bn1(residual.conv1(x)))))
        torch.testing.assert_close(residual(x), torch.relu(residual.se(branch) + x))
        torch.testing.assert_close(output(x), output.se(torch.relu(branch + x)))
        assert not torch.allclose(residual(x), output(x))
    with pytest.raises(ValueError, match="se_position"):
        rse_unet.ResidualSEModule(8, 8, stride=1, se_reduction=2, use_se=True, se_position="x")


def test_se_weights_scale_each_channel_by_a_weight_between_zero_and_one() -> None:
    se = rse_unet.SqueezeExcitation(16, 4)
    x = torch.rand(3, 16, 8, 8) + 0.1
    ratio = se(x) / x
    # One weight per image and channel, the same at every pixel, in (0, 1).
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio), atol=1e-6)
    assert (ratio > 0).all() and (ratio < 1).all()
    # Per image: the weights of one image do not depend on the rest of the batch.
    assert torch.allclose(se(x[:1]), se(x)[:1], atol=1e-6)


def test_strided_convolutions_downsample_not_pooling() -> None:
    model = _net(RseUnetSettings(base_channels=4, depth=4))
    assert not [
        m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d | torch.nn.AvgPool2d)
    ]
    strides = [block.conv1.stride[0] for block in model.encoder.blocks]
    assert strides == [1, 2, 2, 2, 2]  # the paper's four downsamplings: enc2-enc4 and bridge
    assert len(model.decoder) == 4


def test_channels_last_gradients_match_the_default_layout() -> None:
    # The core trains channels-last on the CPU; a strided 1 x 1 shortcut on few channels
    # crashed there (oneDNN), so the shortcut subsamples, then convolves with stride 1.
    torch.manual_seed(0)
    reference = _net(RseUnetSettings(base_channels=4, depth=3))
    fast = copy.deepcopy(reference).to(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32)
    y = torch.randint(0, 3, (4, 32, 32))
    for model, inputs in ((reference, x), (fast, x.contiguous(memory_format=torch.channels_last))):
        torch.nn.functional.cross_entropy(model(inputs), y).backward()
    for (name, a), (_, b) in zip(
        reference.named_parameters(), fast.named_parameters(), strict=True
    ):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_settings_are_checked_through_the_contribution() -> None:
    contribution = find("segmenter", "rse-unet")
    assert contribution.plugin == PLUGIN and contribution.settings is RseUnetSettings
    assert contribution.make_settings({}) == RseUnetSettings()
    assert RseUnetSettings().depth == 4  # the paper's four modules per path
    with pytest.raises(ConfigError, match="depth"):
        contribution.make_settings({"depth": 6})  # 2**6 = 64 would break the core's multiple
    with pytest.raises(ConfigError, match="base_channels"):
        contribution.make_settings({"base_channels": 2})


def test_onnx_export_agrees_with_torch_at_several_sizes() -> None:
    torch.manual_seed(0)
    model = _net(RseUnetSettings(base_channels=4, depth=4, dropout=0.3))
    model.train()
    with torch.no_grad():  # batch-norm statistics away from their initial values
        for _ in range(3):
            model(torch.randn(4, 3, 64, 64) * 2 + 0.5)
    model.eval()
    data = export_onnx(model, 64)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for shape in [(2, 3, 64, 64), (1, 3, 96, 128), (3, 3, 32, 160)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = torch.softmax(model(x), dim=1).numpy()
        (got,) = session.run(None, {"image": x.numpy()})
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-4)


# --------------------------------------------------------------------------- the core's workflows


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("rse")
    truth = root / "truth"
    for i, (name, sample) in enumerate(synth_dataset(30, seed=3, size_range=(48, 96))):
        write_rgb_png(root / "src" / sample.label / f"{name}.png", sample.image)
        write_label_png(truth / f"{name}.png", sample.mask)
        if i < 20:  # the "painted" seed set; the other 10 wait for auto masks
            write_label_png(root / "painted" / f"{name}.png", sample.mask)
    project = Project.init(root / "proj", actor="t")
    run_job(import_images(project, root / "src", actor="dr_a", masks_dir=root / "painted"))
    request = SegTrainRequest(
        arch="rse-unet", settings={"base_channels": 8}, epochs=10, input_size=64, seed=0
    )
    _, report = run_job(train_segmentation(project, request, actor="dr_a"))
    yield project, report, truth
    project.close()


def test_training_through_the_core_records_the_method_and_the_plugin(trained) -> None:
    project, report, _ = trained
    assert report.status == "finished" and report.best is not None
    assert report.best.scores["dice_nucleus"] > MIN_NUCLEUS_DICE, report.best.scores
    config, state = ModelStore(project).load(report.model_id)
    assert config["arch"] == "rse-unet" and report.model_id.startswith("seg-")
    assert config["settings"] == {
        "base_channels": 8, "depth": 4, "se_reduction": 16, "use_se": True,
        "se_position": "residual", "dropout": 0.0,
    }  # fmt: skip
    assert config["plugin"]["plugin"] == PLUGIN
    assert config["plugin"]["version"] == PLUGIN_VERSION == metadata.version(PLUGIN)
    model = build_segmenter(config)  # rebuilt from the config alone
    model.load_state_dict(state)
    assert isinstance(model, rse_unet.RseUnet) and model.head.in_channels == 8
    assert describe_segmenter(config).startswith("rse-unet (base_channels 8, depth 4")


def test_segment_project_writes_auto_masks_with_the_plugin_model(trained) -> None:
    project, report, truth = trained
    _, seg = run_job(segment_project(project, actor="bot", batch_size=8))
    assert seg.tta and len(seg.segmented) == 10 and len(seg.skipped_human) == 20
    current = project.current_versions()
    for image in project.images():
        if image.name in seg.segmented:
            version = current[image.id]
            assert version.provenance is Provenance.AUTO
            assert version.source_model == report.model_id
            assert 0.0 <= version.uncertainty <= 1.0
    _, evaluation = run_job(evaluate_segmentation(project, truth, provenance=["auto"]))
    assert len(evaluation.report.per_image) == 10
    assert evaluation.report.mean["cell"].dice > 0.7
    # The torch engine rebuilds the network through the plugin and agrees with the ONNX one.
    _, torch_predictor, _ = load_predictor(project, report.model_id, engine="torch")
    _, onnx_predictor, _ = load_predictor(project, report.model_id, precision="fp32")
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(torch_predictor(x), onnx_predictor(x), atol=1e-4)


def test_a_model_whose_plugin_is_missing_says_which_plugin_to_install(trained) -> None:
    project, report, _ = trained
    config, _ = ModelStore(project).load(report.model_id)
    saved = catalog()
    others = [
        ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
        if getattr(ep.dist, "name", None) != PLUGIN
    ]  # fmt: skip
    reset_catalog(discover(others))
    try:
        assert "rse-unet" not in catalog().names("segmenter")
        with pytest.raises(ConfigError, match=rf"plugin {PLUGIN} {PLUGIN_VERSION}.*install"):
            build_segmenter(config)
        with pytest.raises(ConfigError, match=PLUGIN):
            load_predictor(project, report.model_id, engine="torch")
    finally:
        reset_catalog(saved)
    assert "rse-unet" in catalog().names("segmenter")


def test_train_seg_on_the_command_line_takes_the_settings_flags(trained, capsys) -> None:
    project, _, _ = trained
    root = Path(project.root)
    before = {r.model_id for r in ModelStore(project).runs("segmentation")}
    args = ["train-seg", root, "--arch", "rse-unet", "--rse-unet-base-channels", "8",
            "--no-rse-unet-use-se", "--epochs", "1", "--input-size", "64"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    out = capsys.readouterr().out
    assert "finished (max_epochs) after 1 epoch(s)" in out
    (new,) = {r.model_id for r in ModelStore(project).runs("segmentation")} - before
    config, _ = ModelStore(project).load(new)
    assert config["arch"] == "rse-unet" and config["plugin"]["plugin"] == PLUGIN
    assert config["settings"]["base_channels"] == 8 and config["settings"]["use_se"] is False
    # A flag of this method with another method chosen is refused, not ignored.
    wrong = ["train-seg", root, "--arch", "unet", "--rse-unet-depth", "3", "--epochs", "1"]
    assert main([str(a) for a in wrong]) != 0
    assert "--rse-unet-depth is a setting of rse-unet, not of unet" in capsys.readouterr().err


def test_the_report_names_the_plugin_segmenter(trained) -> None:
    from cytoreview.report.html import render_report
    from cytoreview.workflows.report import build_report_data

    project, _, _ = trained
    data = run_job(build_report_data(project))[1]
    newest = ModelStore(project).current_model("segmentation")
    assert data.segmentation is not None and data.segmentation.model_id == newest
    config, _ = ModelStore(project).load(newest)
    version = find("segmenter", "rse-unet").version
    settings = ", ".join(f"{k} {v}" for k, v in config["settings"].items())
    assert data.segmentation.arch == (
        f"rse-unet ({settings}) from plugin cytoreview-chowdary {version}"
    )
    assert settings.startswith("base_channels 8, depth 4")
    assert f"rse-unet ({settings})" in render_report(data)["report.html"].decode()
