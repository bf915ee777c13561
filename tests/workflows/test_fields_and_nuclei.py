"""Projects of multi-cell fields (tiled at native resolution) and of nucleus-only masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytoreview.data.synthetic import synth_field
from cytoreview.storage.model_store import ModelStore
from cytoreview.storage.project import Project
from cytoreview.types import Provenance
from cytoreview.workflows.importing import import_images
from cytoreview.workflows.segmentation import (
    SegTrainRequest,
    load_predictor,
    segment_project,
    train_segmentation,
)
from tests.conftest import run_job, write_label_png, write_rgb_png

LABELS = ["NILM", "LSIL", "HSIL", "NILM", "LSIL"]


def _fields_project(root: Path, nucleus_only: bool) -> Project:
    for i in range(6):
        sample = synth_field(LABELS[: 3 + i % 3], seed=10 + i, size=(224, 288))
        mask = np.where(sample.mask == 1, 0, sample.mask) if nucleus_only else sample.mask
        write_rgb_png(root / "src" / "NILM" / f"field_{i}.png", sample.image)
        if i < 4:  # painted; the other two wait for auto masks
            write_label_png(root / "painted" / f"field_{i}.png", mask.astype(np.uint8))
    project = Project.init(root / "proj", actor="t")
    run_job(import_images(project, root / "src", actor="t", masks_dir=root / "painted"))
    return project


@pytest.mark.parametrize("nucleus_only", [False, True])
def test_painted_fields_train_and_segment_at_native_resolution(tmp_path, nucleus_only) -> None:
    project = _fields_project(tmp_path, nucleus_only)
    try:
        request = SegTrainRequest(epochs=3, input_size=128, patience=3, seed=0)
        events, report = run_job(train_segmentation(project, request, actor="t"))
        assert report.status == "finished"
        prepare = next(e for e in events if e.stage == "prepare")
        assert "fields (median" in prepare.message and "native-resolution tiles" in prepare.message
        config, _ = ModelStore(project).load(report.model_id)
        assert config["geometry"] == "fields" and config["tile_threshold"] == 0
        assert config["scale"] == 1.0  # synthetic nuclei are small: nothing is shrunk
        assert config["classes_present"] == [True, not nucleus_only, True]
        _, predictor, spec = load_predictor(project, report.model_id)
        calls: list[tuple[int, ...]] = []
        original = predictor.__call__

        class Counting:
            device = predictor.device

            def __call__(self, batch: np.ndarray) -> np.ndarray:
                calls.append(batch.shape)
                return original(batch)

        from cytoreview.inference.segment import segment_images

        image = project.load_image(project.image("field_5")).rgb
        (result,) = segment_images([image], Counting(), spec)
        assert result.mask.shape == image.shape[:2]
        assert all(shape[-2:] == (128, 128) for shape in calls)  # native tiles, not shrunk
        assert sum(s[0] for s in calls) >= 4  # 224 x 288 px needs at least 2 x 3 tiles
        _, seg = run_job(segment_project(project, actor="bot"))
        assert not seg.tta  # a fields model: the 8 views are not averaged unless asked
        assert sorted(seg.segmented) == ["field_4", "field_5"]
        for name in seg.segmented:
            version, mask = project.current_mask(project.image(name).id)
            assert version.provenance is Provenance.AUTO
            if nucleus_only:  # never a class that no painted mask contains
                assert not (mask == 1).any()
    finally:
        project.close()
