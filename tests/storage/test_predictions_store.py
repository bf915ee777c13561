"""Predictions, heatmaps, reviews, trainee answers and pixel sizes in the project catalog."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from cytoreview.errors import ProjectError, UnknownClassError
from cytoreview.storage.hashing import file_sha256
from cytoreview.storage.images import probe_image, read_image
from cytoreview.storage.predictions import PredictionInput, PredictionStore
from cytoreview.storage.project import Project
from tests.conftest import cell_image, write_rgb_png


def _add(project: Project, tmp_path: Path, name: str = "a", seed: int = 0) -> int:
    rgb, _ = cell_image(seed=seed)
    path = write_rgb_png(tmp_path / f"{name}.png", rgb)
    record = project.add_image(path, read_image(path).info, file_sha256(path), actor="t")
    return record.id


def test_latest_prediction_per_image_and_task(project: Project, tmp_path: Path) -> None:
    a, b = _add(project, tmp_path, "a", 0), _add(project, tmp_path, "b", 1)
    store = PredictionStore(project)
    probs = {"NILM": 0.7, "ASC-US": 0.1, "LSIL": 0.1, "HSIL": 0.1}
    store.save_predictions("cls-1", "bethesda", [PredictionInput(a, "NILM", probs, 0.3)], actor="t")
    later = {"NILM": 0.1, "ASC-US": 0.1, "LSIL": 0.1, "HSIL": 0.7}
    store.save_predictions(
        "cls-2", "bethesda", [PredictionInput(a, "HSIL", later), PredictionInput(b, "NILM", probs)],
        actor="t",
    )  # fmt: skip
    latest = store.latest_predictions("bethesda")
    assert latest[a].pred_class == "HSIL" and latest[a].model_id == "cls-2"
    assert latest[a].probabilities["HSIL"] == pytest.approx(0.7)
    assert store.latest_predictions("bethesda", model_id="cls-1")[a].uncertainty == 0.3
    assert store.latest_predictions("binary") == {}
    assert [p.model_id for p in store.prediction_history(a)] == ["cls-1", "cls-2"]
    assert [e.action for e in project.audit_entries()].count("classify") == 2


def test_heatmap_round_trip_and_replacement(project: Project, tmp_path: Path) -> None:
    a = _add(project, tmp_path)
    store = PredictionStore(project)
    heat = np.linspace(0, 1, 40 * 48, dtype=np.float32).reshape(40, 48)
    rec = store.save_heatmap(a, "cls-1", "gradcam++", "HSIL", heat, {"entropy": 0.5})
    assert (project.root / rec.path).is_file() and rec.quality == {"entropy": 0.5}
    back = store.load_heatmap(rec)
    assert back is not None and back.shape == heat.shape
    assert np.abs(back - heat).max() <= 0.5 / 255 + 1e-6
    again = store.save_heatmap(a, "cls-1", "gradcam++", "NILM", 1 - heat, {"entropy": 0.4})
    assert again.id == rec.id and again.target_class == "NILM"
    assert len(store.heatmap_records()) == 1
    with pytest.raises(ProjectError, match="does not match the image"):
        store.save_heatmap(a, "cls-1", "gradcam", "NILM", np.zeros((5, 5)), {})
    (project.root / again.path).unlink()
    assert store.load_heatmap(again) is None  # a lost file is reported as missing, no crash


def test_reviews_and_trainee_answers(project: Project, tmp_path: Path) -> None:
    a = _add(project, tmp_path)
    store = PredictionStore(project)
    store.add_review(a, reviewer="dr_a", class_call="lsil", decision="approve")
    store.add_review(a, reviewer="dr_a", class_call="HSIL")
    assert store.latest_reviews()[a].class_call == "HSIL"
    with pytest.raises(UnknownClassError):
        store.add_review(a, reviewer="dr_a", class_call="cancer")
    first = store.add_trainee_answer("ana", a, "nilm", "HSIL", model_pred="HSIL", seconds=4.2)
    assert first.answer == "NILM" and not first.correct
    assert store.add_trainee_answer("ana", a, "HSIL", "HSIL").correct
    assert [x.answer for x in store.trainee_answers("ana")] == ["NILM", "HSIL"]
    assert store.trainees() == ["ana"]


def test_pixel_size_from_tiff_tags_and_project_default(project: Project, tmp_path: Path) -> None:
    rgb, _ = cell_image()
    micro = tmp_path / "micro.tif"
    # 4000 px per cm = 2.5 um per pixel (a 4x objective scan).
    tifffile.imwrite(micro, rgb, resolution=(4000, 4000), resolutionunit="CENTIMETER")
    screen = tmp_path / "screen.tif"
    tifffile.imwrite(screen, rgb, resolution=(72, 72), resolutionunit="INCH")
    assert probe_image(micro).pixel_size_um == pytest.approx(2.5)
    assert probe_image(screen).pixel_size_um is None  # 72 dpi is a screen, not a microscope
    m = project.add_image(micro, probe_image(micro), file_sha256(micro), actor="t")
    s = project.add_image(screen, probe_image(screen), file_sha256(screen), actor="t")
    assert project.pixel_size(project.image(m.id)) == pytest.approx(2.5)
    assert project.pixel_size(project.image(s.id)) is None
    project.set_pixel_size(0.25, actor="t")
    assert project.pixel_size(project.image(s.id)) == 0.25
    assert project.pixel_size(project.image(m.id)) == pytest.approx(2.5)  # its own wins
    project.set_pixel_size(0.5, actor="t", image_ids=[s.id])
    assert project.image(s.id).pixel_size_um == 0.5
    with pytest.raises(ProjectError, match="pixel size"):
        project.set_pixel_size(-1, actor="t")


def test_a_version_1_project_migrates_with_its_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cytoreview.storage.catalog as catalog_module
    from cytoreview.storage.schema import MIGRATIONS

    with monkeypatch.context() as patch:  # a project made by the first release
        patch.setattr(catalog_module, "MIGRATIONS", MIGRATIONS[:1])
        patch.setattr(catalog_module, "SCHEMA_VERSION", 1)
        with Project.init(tmp_path / "old", actor="t") as old, old.catalog.write() as conn:
            assert old.catalog.schema_version() == 1
            conn.execute(
                "INSERT INTO images (name, source_path, sha256, width, height, channels, dtype, "
                "format, imported_at, imported_by) VALUES "
                "('a', '/x/a.png', 'abc', 48, 40, 3, 'uint8', 'png', 'then', 't')"
            )
            image_id = 1
    with Project.open(tmp_path / "old") as project:
        assert project.catalog.schema_version() == len(MIGRATIONS)
        assert project.image(image_id).pixel_size_um is None
        PredictionStore(project).save_predictions(
            "m", "binary", [PredictionInput(image_id, "NILM", {"NILM": 1.0})], actor="t"
        )
        assert PredictionStore(project).latest_predictions("binary")[image_id].pred_class == "NILM"
