"""The cytoreview-otsu plugin: the Otsu mask generator, its discovery, the wubineh2024 preset."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from cytoreview_otsu.masks import OTSU, grey_of, otsu_mask
from cytoreview_otsu.settings import OtsuSettings

from cytoreview.cli.main import main
from cytoreview.data.synthetic import synth_cell, synth_dataset, synth_field
from cytoreview.errors import ConfigError
from cytoreview.metrics.segmentation import evaluate_masks
from cytoreview.plugin_api import catalog, find
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project
from cytoreview.types import Provenance
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.mask_generation import generate_masks
from cytoreview.workflows.segmentation import seg_request
from tests.conftest import run_job, write_label_png, write_rgb_png

CLASSES = ("NILM", "ASC-US", "LSIL", "HSIL")
#: Measured on 12 synthetic 96 px crops (three seed sets): mean Dice cytoplasm 0.87-0.95,
#: nucleus 0.77-0.86, whole cell 0.955-0.976. An all-cytoplasm mask scores 0 on nuclei.
MIN_CROP_DICE = {"cytoplasm": 0.8, "nucleus": 0.7, "cell": 0.9}
#: Synthetic 256 px fields of three cells, two-pass: cell 0.73-0.92, nucleus 0.64-0.78;
#: multi-otsu: cell 0.69-0.74. Marking the whole field as cell scores about 0.45.
MIN_FIELD_CELL_DICE = {"two-pass": 0.65, "multi-otsu": 0.6}


def _crops(seed: int = 0, n: int = 12) -> list:
    return [(f"c{i}", synth_cell(CLASSES[i % 4], seed + i, 96)) for i in range(n)]


def _mean_dice(masks: list[np.ndarray], samples: list) -> dict[str, float]:
    report = evaluate_masks(
        (name, mask, s.mask, None) for (name, s), mask in zip(samples, masks, strict=True)
    )
    return {cls: report.mean[cls].dice for cls in ("cytoplasm", "nucleus", "cell")}


def test_generator_matches_the_truth_on_synthetic_crops() -> None:
    samples = _crops()
    masks = [OTSU.generate(s.image, OtsuSettings()) for _, s in samples]
    for mask, (_, sample) in zip(masks, samples, strict=True):
        assert mask.dtype == np.uint8 and mask.shape == sample.mask.shape
        assert set(np.unique(mask)) <= {0, 1, 2}
    dice = _mean_dice(masks, samples)
    for cls, low in MIN_CROP_DICE.items():
        assert dice[cls] > low, dice


@pytest.mark.parametrize("method", ["two-pass", "multi-otsu"])
def test_generator_finds_the_cells_of_a_field(method: str) -> None:
    samples = [(f"f{i}", synth_field(["NILM", "HSIL", "LSIL"], i, (256, 256))) for i in range(4)]
    masks = [otsu_mask(s.image, OtsuSettings(method=method)) for _, s in samples]
    assert _mean_dice(masks, samples)["cell"] > MIN_FIELD_CELL_DICE[method]


def test_every_nucleus_lies_in_a_cell_that_has_cytoplasm() -> None:
    for method in ("two-pass", "multi-otsu"):
        for _, sample in synth_dataset(12, seed=4, size_range=(40, 120), field_fraction=0.3):
            mask = otsu_mask(sample.image, OtsuSettings(method=method))
            n, cells = cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)
            for label in range(1, n):
                inside = mask[cells == label]
                # A cell with a nucleus keeps a cytoplasm rim: the nucleus is never the cell.
                if (inside == 2).any():
                    assert (inside == 1).any(), method


@pytest.mark.parametrize("value", [0, 128, 255])
def test_flat_image_is_all_background(value: int) -> None:
    flat = np.full((50, 60, 3), value, np.uint8)
    assert not otsu_mask(flat).any()
    noisy = (flat.astype(int) + np.random.default_rng(0).integers(-2, 3, flat.shape)).clip(0, 255)
    assert not otsu_mask(noisy.astype(np.uint8)).any()  # pixel noise is not a cell
    assert not otsu_mask(np.zeros((0, 0, 3), np.uint8)).any()


def test_grey_and_rgba_input() -> None:
    sample = synth_cell("HSIL", 7, 96)
    rgb = sample.image
    expected = otsu_mask(rgb)
    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    assert np.array_equal(otsu_mask(opaque), expected)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    from_grey = otsu_mask(grey)
    assert np.array_equal(from_grey, otsu_mask(grey[..., None]))
    assert np.array_equal(from_grey, otsu_mask(np.dstack([grey] * 3)))
    assert _mean_dice([from_grey], [("g", sample)])["cell"] > MIN_CROP_DICE["cell"]
    as_float = otsu_mask(rgb.astype(np.float32) / 255)
    assert _mean_dice([as_float], [("f", sample)])["cell"] > MIN_CROP_DICE["cell"]
    # A transparent image is an empty slide (white), whatever its colour channels hold.
    clear = np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])
    assert not otsu_mask(clear).any()
    with pytest.raises(ValueError, match="grey, RGB or RGBA"):
        grey_of(np.zeros((4, 4, 5), np.uint8))


def test_settings_are_checked_through_the_contribution() -> None:
    otsu = find("mask-generator", "otsu")
    assert otsu.plugin == "cytoreview-otsu" and "Wubineh" in otsu.citation
    assert otsu.make_settings({"method": "two-pass"}).method == "two-pass"
    with pytest.raises(ConfigError, match="valid: multi-otsu, two-pass"):
        otsu.make_settings({"method": "kmeans"})
    with pytest.raises(ConfigError, match="min_cell"):
        otsu.make_settings({"min_cell": 2.0})


def test_preset_values_reach_the_request() -> None:
    found = [(c, who) for c, p, who in catalog().presets() if p.name == "wubineh2024"]
    assert len(found) == 1
    owner, publisher = found[0]
    assert owner.name == "unet" and publisher == "cytoreview-otsu"
    request = seg_request("wubineh2024", epochs=1)
    assert (request.arch, request.loss, request.lr, request.batch_size) == (
        "unet",
        "jaccard",
        0.003,
        18,
    )
    assert (request.patience, request.lr_patience, request.ema_decay) == (100, 0, 0.0)
    assert request.input_size == 224 and request.epochs == 1 and request.preset == "wubineh2024"
    for off in ("shift", "shear", "brightness", "contrast", "saturation", "hue_deg", "stain"):
        assert request.augment[off] == 0.0
    assert request.augment["blur_prob"] == 0.0 and "rotation_deg" not in request.augment
    assert request.settings == {"decoder_width": 256}  # the usual U-Net, not the half width
    # The user's own setting merges with the preset's, key by key.
    mine = seg_request("wubineh2024", settings={"encoder": "resnet34"})
    assert mine.settings == {"decoder_width": 256, "encoder": "resnet34"}


def test_plugins_command_lists_the_generator_and_the_preset(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    mine = next(p for p in data["plugins"] if p["name"] == "cytoreview-otsu")
    assert [(c["kind"], c["name"]) for c in mine["contributions"]] == [("mask-generator", "otsu")]
    assert {"--otsu-method", "--otsu-morph-radius"} <= {
        s["flag"] for s in mine["contributions"][0]["settings"]
    }
    preset = next(p for p in data["presets"] if p["name"] == "wubineh2024")
    assert preset["segmenter"] == "unet" and preset["values"]["loss"] == "jaccard"


@pytest.fixture
def synthetic_project(tmp_path: Path) -> Project:
    """12 synthetic cells; the first 3 painted by a person (manual masks)."""
    for i, (name, sample) in enumerate(synth_dataset(12, seed=2, size_range=(48, 80))):
        write_rgb_png(tmp_path / "src" / sample.label / f"{name}.png", sample.image)
        if i < 3:
            write_label_png(tmp_path / "painted" / f"{name}.png", sample.mask)
    project = Project.init(tmp_path / "proj", actor="t")
    run_job(import_images(project, tmp_path / "src", actor="dr_a", masks_dir=tmp_path / "painted"))
    yield project
    project.close()


def test_generate_masks_fills_unpainted_images_only(synthetic_project: Project) -> None:
    project = synthetic_project
    before = {im.name: project.mask_versions(im.id) for im in project.images()}
    painted = {name for name, versions in before.items() if versions}
    assert len(painted) == 3
    _, report = run_job(generate_masks(project, "otsu", {"method": "two-pass"}, actor="bot"))
    assert sorted(report.skipped_human) == sorted(painted) and len(report.made) == 9
    assert report.settings["method"] == "two-pass" and report.plugin == "cytoreview-otsu"
    current = project.current_versions()
    for image in project.images():
        version = current[image.id]
        if image.name in painted:
            assert project.mask_versions(image.id) == before[image.name]
        else:
            assert version.provenance is Provenance.AUTO
            assert version.source_model == "generator:otsu"
            assert (project.current_mask(image.id)[1] == 2).any()  # a nucleus was found
    # The report says where those masks (and so their measurements) came from.
    from cytoreview.workflows.report import build_report_data

    data = run_job(build_report_data(project))[1]
    assert (
        "9 current mask(s) were made by the mask generator otsu (no painting, no model)"
        in " ".join(data.notes)
    )


def test_train_from_zero_painting_with_the_paper_preset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, sample in synth_dataset(10, seed=6, size_range=(48, 72)):
        write_rgb_png(tmp_path / "src" / sample.label / f"{name}.png", sample.image)
    root = tmp_path / "proj"
    assert main(["init", str(root)]) == 0
    assert main(["import", str(root), str(tmp_path / "src")]) == 0
    assert main(["generate-masks", str(root)]) == 0  # the only generator: no --generator
    assert main(["train-seg", str(root), "--preset", "wubineh2024", "--epochs", "1"]) == 1
    assert "--include-generated" in capsys.readouterr().err  # nothing painted: says how
    args = ["--preset", "wubineh2024", "--epochs", "1", "--input-size", "64"]
    assert main(["train-seg", str(root), *args, "--include-generated"]) == 0
    with Project.open(root) as project:
        store = ModelStore(project)
        config, _ = store.load(store.current_model("segmentation"))
    assert config["preset"] == "wubineh2024" and config["include_generated"] is True
    training = config["training"]
    assert (training["loss"], training["lr"], training["batch_size"]) == ("jaccard", 0.003, 18)
    assert training["augment"]["shear"] == 0.0 and training["augment"]["stain"] == 0.0
    assert config["input_size"] == 64  # the flag given wins over the preset's 224
