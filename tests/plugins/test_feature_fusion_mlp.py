"""The Chowdary et al. feature-fusion MLP classifier: features, model, training, review path.

Tiny everywhere (32 px inputs, CNN branches at 5 % width, 8 visual words, one epoch per
branch): the workflow tests check the plumbing (checkpoint, predictions, binary call,
uncertainty, report, heatmap or its absence, CLI), not accuracy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cytoreview_chowdary.features import (
    LBP_BINS,
    SiftBagOfWords,
    fit_codebook,
    fit_pca,
    grey_from_input,
    lbp_codes,
    lbp_histogram,
    sift_descriptors,
)
from cytoreview_chowdary.fusion_mlp import FEATURE_FUSION_MLP, FeatureFusionMlp
from cytoreview_chowdary.fusion_settings import FusionMlpSettings
from skimage.feature import local_binary_pattern

from cytoreview.cli.main import main
from cytoreview.data.synthetic import synth_dataset
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.predictions import PredictionStore
from cytoreview.storage.project import Project
from cytoreview.workflows.classification import (
    ClsTrainRequest,
    load_classifier,
    train_classification,
)
from cytoreview.workflows.cls_runtime import NoHeatmapError, classifier_runtime
from cytoreview.workflows.heatmaps import get_or_compute_heatmap, heatmap_unavailable
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.report import build_report_data
from cytoreview.workflows.review_data import (
    classify_project,
    explain_image,
    explain_project,
    image_details,
)
from tests.conftest import run_job, write_label_png, write_rgb_png

ARCH = "feature-fusion-mlp"
TINY = {"width": 0.05, "fc_width": 16, "words": 8, "mlp_hidden": 16, "mlp_epochs": 40}
NO_CNN = {**TINY, "vgg19": False, "vgg_f": False, "caffenet": False}
CLASSES = ("NILM", "HSIL")


def _model(settings: dict, fitted: dict | None = None) -> FeatureFusionMlp:
    config = {"class_names": ["a", "b", "c"], "input_size": 32, "settings": settings}
    if fitted is not None:
        config["fitted"] = fitted
    return FEATURE_FUSION_MLP.build(config).eval()


# -- features ----------------------------------------------------------------------------------
def test_lbp_codes_equal_scikit_image_and_the_histogram_sums_to_one() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (37, 41)).astype(np.uint8)
    image[4:14, 6:20] = 120  # a flat patch: ties between neighbour and centre
    expected = local_binary_pattern(image, 8, 1)  # method "default"
    codes = lbp_codes(torch.from_numpy(image.astype(np.float64))[None])[0].numpy()
    # Same arithmetic, border included (outside pixels are 0 in both).
    np.testing.assert_array_equal(codes, expected)
    hist = lbp_histogram(torch.from_numpy(image.astype(np.float64))[None])[0].numpy()
    assert hist.shape == (LBP_BINS,) and hist.sum() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(hist, np.bincount(expected.astype(int).ravel(), minlength=256)
                               / expected.size, atol=1e-7)  # fmt: skip


def test_grey_from_input_undoes_the_imagenet_normalisation() -> None:
    from cytoreview.data.cls_dataset import make_input

    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50
    x = torch.from_numpy(make_input(rgb, None, 32))[None]
    grey = grey_from_input(x[:, :3])
    assert grey.shape == (1, 32, 32)
    assert float(grey[0, 16, 16]) == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)


def test_sift_bag_of_words_counts_descriptors_over_the_codebook() -> None:
    rng = np.random.default_rng(0)
    textured = (rng.random((48, 48)) * 255).astype(np.uint8)
    dense = sift_descriptors(textured, "dense")
    assert dense.ndim == 2 and dense.shape[1] == 128 and len(dense) >= 16
    codebook = fit_codebook(dense, 5, seed=0)
    assert codebook.shape == (5, 128)
    bovw = SiftBagOfWords(5, "dense")
    bovw.codebook.copy_(torch.from_numpy(codebook))
    flat = np.full((48, 48), 90, np.uint8)
    grey = torch.from_numpy(np.stack([textured, flat]).astype(np.float64))
    hist = bovw(grey).numpy()
    assert hist.shape == (2, 5)
    assert hist[0].sum() == pytest.approx(1.0, abs=1e-6)
    # Same counts as assigning each descriptor to its nearest word by hand.
    nearest = ((dense[:, None] - codebook[None]) ** 2).sum(-1).argmin(1)
    np.testing.assert_allclose(hist[0], np.bincount(nearest, minlength=5) / len(dense), atol=1e-6)
    # The detector finds nothing on a flat image: an empty (all-zero) histogram, no crash.
    detector = SiftBagOfWords(5, "detected")
    detector.codebook.copy_(torch.from_numpy(codebook))
    assert detector(grey[1:]).sum() == 0


@pytest.mark.parametrize("percent", [50.0, 80.0, 95.0, 99.0])
def test_pca_keeps_at_least_p_percent_of_the_variance(percent: float) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 30)) * np.linspace(5, 0.1, 30)  # decaying variances
    mean, components, scale, kept = fit_pca(x, percent)
    total = ((x - x.mean(0)) ** 2).sum()
    projected = (x - mean) @ components.T
    assert kept >= percent / 100 - 1e-9
    assert (projected**2).sum() / total == pytest.approx(kept, rel=1e-6)
    # The fewest components: one less falls short.
    assert ((projected[:, :-1] ** 2).sum() / total < percent / 100) or len(components) == 1
    assert (projected * scale).var(0).sum() == pytest.approx(1.0, rel=0.02)


# -- the model ---------------------------------------------------------------------------------
def test_forward_shapes_with_every_group_and_without_cnns() -> None:
    x = torch.randn(3, 6, 32, 32)
    full = _model(TINY)
    assert set(full.raw_dims()) == {"vgg19", "vgg_f", "caffenet", "lbp", "bovw"}
    assert full(x).shape == (3, 3) and full.cam_layer is not None
    fitted = _model(TINY, {"pca_dims": {"vgg19": 4, "vgg_f": 3, "caffenet": 2, "lbp": 5,
                                        "bovw": 2}, "words": 6})  # fmt: skip
    assert fitted.mlp[0].in_features == 16 and fitted.bovw.words == 6
    assert fitted(x).shape == (3, 3)
    handmade = _model(NO_CNN)
    assert handmade.cam_layer is None and handmade(x).shape == (3, 3)
    with pytest.raises(Exception, match="at least one"):
        _model({**NO_CNN, "lbp": False, "bovw": False})


def test_a_checkpoint_rebuilds_from_its_config() -> None:
    fitted = {"pca_dims": {"vgg19": 3, "vgg_f": 3, "caffenet": 3, "lbp": 4, "bovw": 2},
              "words": 5}  # fmt: skip
    model = _model(TINY, fitted)
    again = _model(TINY, fitted)
    again.load_state_dict(model.state_dict())  # every buffer's shape is known from the config
    x = torch.randn(2, 6, 32, 32)
    torch.testing.assert_close(model(x), again(x))


def test_settings_defaults_follow_the_paper() -> None:
    s = FusionMlpSettings()
    assert (s.variance, s.words, s.mlp_batch) == (95.0, 150, 32)
    assert s.groups == ("vgg19", "vgg_f", "caffenet", "lbp", "bovw")


# -- the workflow ------------------------------------------------------------------------------
def _project(root) -> Project:
    for name, sample in synth_dataset(20, seed=2, classes=CLASSES, size_range=(30, 40)):
        write_rgb_png(root / "src" / sample.label / f"{name}.png", sample.image)
        write_label_png(root / "masks" / f"{name}.png", sample.mask)
    project = Project.init(root / "proj", actor="t")
    run_job(import_images(project, root / "src", actor="dr_a", masks_dir=root / "masks"))
    return project


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ffm")
    project = _project(root)
    request = ClsTrainRequest(arch=ARCH, settings=TINY, input_size=32, epochs=1, batch_size=8,
                              patience=2, seed=0)  # fmt: skip
    events, report = run_job(train_classification(project, request, actor="dr_a"))
    yield project, report, events
    project.close()


def test_training_stores_a_checkpoint_that_runs_in_torch(trained) -> None:
    project, report, events = trained
    assert report.status == "finished" and report.class_names == list(CLASSES)
    assert report.n_val >= 2 and report.validation["images"]
    epochs = [e for e in events if e.stage == "epoch"]
    assert any("vgg19 branch" in e.message for e in epochs)
    assert any("MLP epoch" in e.message for e in epochs)
    assert [e.step for e in epochs] == sorted(e.step for e in epochs)  # one running count
    assert any("no ONNX export" in e.message for e in events if e.stage == "export")
    store = ModelStore(project)
    assert store.load_onnx(report.model_id) is None
    config, _ = store.load(report.model_id)
    assert set(config["fitted"]["pca_dims"]) == {"vgg19", "vgg_f", "caffenet", "lbp", "bovw"}
    assert all(v >= 0.95 for v in config["fitted"]["kept_variance"].values())
    loaded = load_classifier(project, engine="onnx")  # falls back to torch
    assert not loaded.onnx_exportable and loaded.onnx_bytes is None
    runtime = classifier_runtime(loaded, "onnx", "cpu")
    assert runtime.engine == "torch" and "no ONNX export" in runtime.device


def test_classify_report_and_heatmap(trained) -> None:
    project, report, _ = trained
    _, classified = run_job(classify_project(project, actor="dr_a", device="cpu"))
    assert classified.classified == 20 and classified.engine == "torch"
    store = PredictionStore(project)
    preds = store.latest_predictions("bethesda")
    binary = store.latest_predictions("binary")
    assert len(preds) == len(binary) == 20
    some = next(iter(preds.values()))
    assert sum(some.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert 0.0 <= some.uncertainty <= 1.0
    assert binary[some.image_id].probabilities["revisable"] == pytest.approx(
        some.probabilities["HSIL"], abs=1e-6
    )
    data = run_job(build_report_data(project))[1]
    assert data.classification is not None  # scored against the project's own labels
    assert data.classification.arch.startswith("feature-fusion-mlp (VGG19 + VGG-F + CaffeNet")
    assert data.classification.arch.endswith("from plugin cytoreview-chowdary 0.1.0")
    record = project.images()[0]
    loaded = load_classifier(project, engine="torch")
    image = project.load_image(record).rgb
    heatmap, cls, quality = explain_image(loaded, image, None, flipping_steps=0, device="cpu")
    assert heatmap.shape == image.shape[:2] and heatmap.dtype == np.float32
    assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    assert 0 <= cls < 2 and 0.0 <= quality["confidence"] <= 1.0
    assert heatmap_unavailable(project, report.model_id) is None
    assert image_details(project, record.id, measure=False).heatmap_note is None


def test_cli_trains_without_cnns_and_the_review_says_there_is_no_heatmap(tmp_path) -> None:
    project = _project(tmp_path)
    root = str(project.root)
    project.close()
    names = {k: f"{ARCH}-{k.replace('_', '-')}" for k in NO_CNN}
    flags = [f"--no-{names[k]}" if v is False else f"--{names[k]}={v}" for k, v in NO_CNN.items()]
    code = main(["train-cls", root, "--arch", ARCH, *flags, "--input-size", "32",
                 "--epochs", "1", "--batch-size", "8", "--device", "cpu"])  # fmt: skip
    assert code == 0
    with Project.open(root) as project:
        model_id = ModelStore(project).current_model("classification-bethesda")
        config, _ = ModelStore(project).load(model_id)
        assert config["arch"] == ARCH and config["settings"]["vgg19"] is False
        assert set(config["fitted"]["pca_dims"]) == {"lbp", "bovw"}
        run_job(classify_project(project, actor="dr_a", device="cpu"))
        image_id = project.images()[0].id
        note = heatmap_unavailable(project, model_id)
        assert note is not None and f"({ARCH}" in note and "has no heatmap" in note
        assert image_details(project, image_id, measure=False).heatmap_note == note
        with pytest.raises(NoHeatmapError, match="has no heatmap"):
            get_or_compute_heatmap(project, image_id, device="cpu")
        _, explained = run_job(explain_project(project, device="cpu"))
        assert explained.explained == 0 and "has no heatmap" in explained.skipped[0]


@pytest.mark.gui
def test_the_review_panel_says_this_classifier_has_no_heatmap(
    make_napari_viewer, qtbot, tmp_path
) -> None:
    from cytoreview.gui.app import build_workbench

    project = _project(tmp_path)
    request = ClsTrainRequest(arch=ARCH, settings=NO_CNN, input_size=32, epochs=1, batch_size=8,
                              device="cpu")  # fmt: skip
    run_job(train_classification(project, request, actor="dr_a"))
    run_job(classify_project(project, actor="dr_a", device="cpu"))
    image_id = project.images()[1].id
    root = project.root
    project.close()
    wb = build_workbench(make_napari_viewer(), root, actor="dr_a", autosave_delay_ms=50)
    try:
        panel = wb.panels["review"]
        wb.state.open_image(image_id)
        qtbot.waitUntil(lambda: panel.details is not None and panel.details.image_id == image_id)
        assert f"({ARCH}" in panel.heatmap_status.text()
        assert "has no heatmap" in panel.heatmap_status.text()
        panel.toggle_heatmap()  # asking for one says the same, not "heatmap failed"
        qtbot.waitUntil(lambda: not wb.panels["review"].heatmap.runner.is_running)
        qtbot.wait(100)
        assert "has no heatmap" in panel.heatmap_status.text()
        assert "failed" not in panel.heatmap_status.text()
    finally:
        wb.close()


def test_a_weights_file_fits_the_first_cnn_branch() -> None:
    from cytoreview.models.classifiers import load_backbone_weights

    donor = _model(TINY).branches["vgg19"]
    model = _model(TINY)
    # As a torchvision vgg19_bn file at width 1.0: "features.N.*" and "classifier.N.*" names.
    report = load_backbone_weights(model, {f"module.{k}": v for k, v in donor.state_dict().items()})
    assert report.loaded == len(donor.state_dict()) and not report.missing
    torch.testing.assert_close(model.branches["vgg19"].features[0].weight, donor.features[0].weight)


def test_the_report_names_the_feature_groups_not_a_backbone() -> None:
    from cytoreview.models.classifiers import describe_classifier

    config = {
        "arch": "feature-fusion-mlp", "backbone": "resnet18",
        "settings": {"caffenet": False, "bovw": False},
        "plugin": {"plugin": "cytoreview-chowdary", "version": "0.1.0"},
    }  # fmt: skip
    text = describe_classifier(config)
    assert text.startswith("feature-fusion-mlp (VGG19 + VGG-F + LBP; CNN width 0.125, PCA 95 %")
    assert "resnet18" not in text and text.endswith("from plugin cytoreview-chowdary 0.1.0")
