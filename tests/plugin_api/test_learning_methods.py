"""The optional parts of the protocols: a generator that learns first, a segmenter's trainer."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest

from cytoreview.cli.main import main
from cytoreview.data.synthetic import synth_dataset
from cytoreview.errors import NotEnoughDataError
from cytoreview.plugin_api import ENTRY_POINT_GROUP, reset_catalog
from cytoreview.plugin_api.discovery import discover
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project
from cytoreview.types import CancelToken, Provenance
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.mask_generation import (
    GENERATOR_KIND,
    generate_masks,
    labelled_examples,
)
from cytoreview.workflows.segmentation import SegTrainRequest, train_segmentation
from tests.conftest import run_job, write_label_png, write_rgb_png
from tests.plugins import learning_methods
from tests.plugins.learning_methods import GENERATOR, SEGMENTER

TARGET = "tests.plugins.learning_methods:PLUGIN"


@pytest.fixture(autouse=True)
def learning_plugin():
    found = discover([EntryPoint("learning_methods", TARGET, ENTRY_POINT_GROUP)])
    assert not found.broken, found.broken
    reset_catalog(found)
    yield found
    reset_catalog()


@pytest.fixture
def labelled_project(tmp_path: Path) -> Project:
    """10 synthetic cells in class folders (so labelled); the first 2 painted."""
    for i, (name, sample) in enumerate(synth_dataset(10, seed=3, size_range=(48, 72))):
        write_rgb_png(tmp_path / "src" / sample.label / f"{name}.png", sample.image)
        if i < 2:
            write_label_png(tmp_path / "painted" / f"{name}.png", sample.mask)
    project = Project.init(tmp_path / "proj", actor="t")
    run_job(import_images(project, tmp_path / "src", actor="t", masks_dir=tmp_path / "painted"))
    yield project
    project.close()


def test_examples_are_the_labelled_images_outside_the_test_split(tmp_path: Path) -> None:
    rows = ["path,class,split"]
    for i, (name, sample) in enumerate(synth_dataset(6, seed=5, size_range=(48, 64))):
        write_rgb_png(tmp_path / "img" / f"{name}.png", sample.image)
        label = "" if i == 5 else sample.label  # one image without a class
        rows.append(f"img/{name}.png,{label},{'test' if i == 0 else 'train'}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    project = Project.init(tmp_path / "proj", actor="t")
    try:
        run_job(import_images(project, tmp_path / "list.csv", actor="t"))
        images = project.images()
        kept = [im for im in images if im.split != "test" and im.class_label]
        assert len(images) == 6 and len(kept) == 4
        examples = labelled_examples(project)
        assert [e.name for e in examples] == [im.name for im in kept]
        for example, image in zip(examples, kept, strict=True):
            assert example.class_label == image.class_label
            assert example.abnormal == (image.class_label != "NILM")
            assert np.array_equal(example.load(), project.load_image(image).rgb)
    finally:
        project.close()


def test_a_learning_generator_fits_stores_and_masks_with_uncertainty(labelled_project) -> None:
    project = labelled_project
    GENERATOR.seen.clear()
    events, report = run_job(generate_masks(project, "learnt-threshold", actor="bot"))
    assert len(GENERATOR.seen) == 1 and len(GENERATOR.seen[0]) == 10  # all labelled images
    assert len(report.made) == 8 and len(report.skipped_human) == 2
    assert report.fitted.endswith("learnt from 10 image(s)")
    # What it fitted is a project model of its own kind, loadable with weights_only.
    store = ModelStore(project)
    config, state = store.load(report.fitted_model)
    assert config["kind"] == GENERATOR_KIND and config["generator"] == "learnt-threshold"
    assert state["thresholds"].shape == (2,)
    assert any(report.fitted_model in e.message for e in events if e.stage == "prepare")
    current = project.current_versions()
    for name in report.made:
        version = current[project.image(name).id]
        assert version.provenance is Provenance.AUTO
        assert version.source_model == "generator:learnt-threshold"
        assert version.uncertainty == pytest.approx(report.uncertainties[name])
        assert 0.0 <= version.uncertainty <= 1.0
        assert report.fitted in version.note
    # Reusing the stored fit skips learning and gives the same masks.
    first = {n: project.current_mask(project.image(n).id)[1] for n in report.made}
    path = store.checkpoint_path(report.fitted_model)
    _, again = run_job(
        generate_masks(project, "learnt-threshold", {"weights": str(path)}, actor="bot")
    )
    assert again.fitted.endswith("learnt from 0 image(s)")
    for name in again.made:
        assert np.array_equal(project.current_mask(project.image(name).id)[1], first[name])


def test_no_class_labels_is_one_clear_error(tmp_path: Path) -> None:
    for name, sample in synth_dataset(3, seed=1, size_range=(48, 64)):
        write_rgb_png(tmp_path / "flat" / f"{name}.png", sample.image)
    project = Project.init(tmp_path / "proj", actor="t")
    try:
        run_job(import_images(project, tmp_path / "flat", actor="t"))  # no class folders
        with pytest.raises(NotEnoughDataError, match="no image has a class label"):
            run_job(generate_masks(project, "learnt-threshold", actor="bot"))
    finally:
        project.close()


def test_cancel_while_learning_writes_nothing(labelled_project) -> None:
    project = labelled_project
    token = CancelToken()
    job = generate_masks(project, "learnt-threshold", actor="bot", cancel=token)
    for event in job:
        if event.stage == "prepare" and event.step == 3:
            token.cancel()
    before = project.current_versions()
    assert all(v.provenance.is_human for v in before.values())
    assert not ModelStore(project).runs(GENERATOR_KIND)


def test_masks_from_labels_command(labelled_project, capsys) -> None:
    root = labelled_project.root
    labelled_project.close()
    assert main(["masks-from-labels", str(root)]) == 0  # the only one: no --generator
    out = capsys.readouterr().out
    assert "8 mask(s) generated with learnt-threshold" in out
    assert "fitted first: thresholds" in out and "least sure (review first)" in out


def test_a_segmenters_own_trainer_and_size_multiple_are_used(labelled_project) -> None:
    SEGMENTER.calls = 0
    request = SegTrainRequest(arch="counted-unet", epochs=1, batch_size=2)
    _, report = run_job(train_segmentation(labelled_project, request, actor="t"))
    assert SEGMENTER.calls == 1 and report.status == "finished"
    config, _ = ModelStore(labelled_project).load(report.model_id)
    # The cells are 48-72 px: the core alone would choose 64; this network asks for 64s.
    assert config["input_size"] % learning_methods.CountedUnet.size_multiple == 0
