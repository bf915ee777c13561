"""Import: formats, bad input, idempotence, masks, manifests, cancel."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from cytoreview.storage.project import Project
from cytoreview.types import CancelToken, Provenance
from cytoreview.workflows.importing import ImportReport, import_images
from tests.conftest import cell_image, run_job, write_label_png, write_rgb_png


def run(job) -> tuple[list, ImportReport]:
    return run_job(job)


def _snapshot(project: Project) -> tuple:
    images = tuple(project.images())
    versions = tuple(v for im in images for v in project.mask_versions(im.id))
    return images, versions


def test_folder_import_with_masks(project: Project, image_folder: Path) -> None:
    events, report = run(
        import_images(project, image_folder, actor="dr_a", masks_dir=image_folder.parent / "masks")
    )
    assert sorted(report.added) == [f"{c}_{i}" for c in ("hsil", "nilm") for i in range(3)]
    assert report.masks_added == 6 and report.problems == []
    assert [e.step for e in events] == list(range(1, 7)) and events[-1].total == 6
    assert {im.class_label for im in project.images()} == {"NILM", "HSIL"}
    current = project.current_versions()
    assert all(v.provenance is Provenance.MANUAL and v.author == "dr_a" for v in current.values())
    assert sum(e.action == "import" for e in project.audit_entries()) == 6


def test_reimport_is_idempotent(project: Project, image_folder: Path) -> None:
    masks = image_folder.parent / "masks"
    run(import_images(project, image_folder, actor="dr_a", masks_dir=masks))
    before = _snapshot(project)
    _, report = run(import_images(project, image_folder, actor="dr_b", masks_dir=masks))
    assert report.added == [] and len(report.already_present) == 6 and report.masks_added == 0
    assert _snapshot(project) == before


def test_reimport_never_replaces_a_different_mask(
    project: Project, image_folder: Path, tmp_path: Path
) -> None:
    run(import_images(project, image_folder, actor="dr_a", masks_dir=image_folder.parent / "masks"))
    other = tmp_path / "other_masks"
    write_label_png(other / "nilm_0.png", np.zeros((40, 48), np.uint8))
    _, report = run(import_images(project, image_folder, actor="dr_b", masks_dir=other))
    assert report.masks_added == 0 and "not replaced" in report.warnings[0]
    assert len(project.mask_versions(project.image("nilm_0").id)) == 1


def test_same_stem_in_two_classes_gets_unique_names(project: Project, tmp_path: Path) -> None:
    rgb_a, _ = cell_image(seed=1)
    rgb_b, _ = cell_image(seed=2)
    write_rgb_png(tmp_path / "src" / "NILM" / "cell.png", rgb_a)
    write_rgb_png(tmp_path / "src" / "HSIL" / "cell.png", rgb_b)
    _, report = run(import_images(project, tmp_path / "src", actor="t"))
    assert len(report.added) == 2 and "cell" in report.added
    assert len({im.name for im in project.images()}) == 2


def test_formats_grey_rgba_16bit_float_tiff(project: Project, tmp_path: Path) -> None:
    src = tmp_path / "fmt"
    src.mkdir()
    rgb, _ = cell_image()
    cv2.imwrite(str(src / "grey.png"), rgb[..., 0])
    cv2.imwrite(str(src / "rgba.png"), np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]))
    cv2.imwrite(str(src / "deep.png"), (rgb.astype(np.uint16) * 257)[..., ::-1])
    cv2.imwrite(str(src / "pic.jpg"), rgb)
    cv2.imwrite(str(src / "pic.bmp"), rgb[::-1])
    tifffile.imwrite(src / "float.tif", rgb.astype(np.float32) / 255.0, photometric="rgb")
    tifffile.imwrite(
        src / "stack.tif", np.stack([rgb[..., 0]] * 3 + [rgb[..., 1]]), photometric="minisblack"
    )
    _, report = run(import_images(project, src, actor="t"))
    assert report.problems == [], report.problems
    records = {im.name: im for im in project.images()}
    assert records["deep"].dtype == "uint16" and records["float"].dtype == "float32"
    assert records["grey"].channels == 1 and records["rgba"].channels == 4
    assert records["stack"].n_pages == 4
    for record in records.values():
        loaded = project.load_image(record)
        assert loaded.rgb.shape == (40, 48, 3) and loaded.rgb.dtype == np.uint8
    # The original pixels are kept: the project's copy of the 16-bit file is still 16-bit.
    assert project.load_image(records["deep"]).original.dtype == np.uint16


def _bad_inputs(root: Path) -> dict[str, str]:
    """Write one file per bad case; return file name -> expected words in the reason."""
    rgb, _ = cell_image(seed=99)
    good = write_rgb_png(root / "NILM" / "good.png", rgb)
    (root / "NILM" / "empty.png").write_bytes(b"")
    (root / "NILM" / "text.png").write_text("this is not an image\n")
    data = good.read_bytes()
    (root / "NILM" / "truncated.png").write_bytes(data[: len(data) // 2])
    _, jpg = cv2.imencode(".jpg", rgb)
    (root / "NILM" / "truncated.jpg").write_bytes(jpg.tobytes()[: len(jpg) // 2])
    tifffile.imwrite(root / "NILM" / "complex.tif", np.zeros((8, 8), np.complex64))
    write_rgb_png(root / "NILM" / "huge.png", np.zeros((120, 120, 3), np.uint8))
    write_rgb_png(root / "Carcinoma" / "unknown_class.png", rgb[::-1])
    (root / "NILM" / "report.docx").write_bytes(b"PK")
    return {
        "empty.png": "empty",
        "text.png": "not an image",
        "truncated.png": "truncated",
        "truncated.jpg": "truncated",
        "complex.tif": "complex",
        "huge.png": "above the limit",
        "unknown_class.png": "unknown class 'Carcinoma'",
        "report.docx": "not an image type",
    }


def test_bad_input_is_reported_and_the_rest_goes_in(tmp_path: Path) -> None:
    expected = _bad_inputs(tmp_path / "src")
    with Project.init(tmp_path / "p", actor="t", max_pixels=10_000) as project:
        events, report = run(import_images(project, tmp_path / "src", actor="t"))
        assert report.added == ["good"]
        assert len(report.problems) == len(expected)
        for name, words in expected.items():
            hits = [p for p in report.problems if name in p]
            assert len(hits) == 1, (name, report.problems)
            assert words.lower() in hits[0].lower(), hits[0]
        assert sum(e.level == "warning" for e in events) == len(expected)


def test_bad_input_changes_nothing_already_there(project: Project, image_folder: Path) -> None:
    run(import_images(project, image_folder, actor="dr_a", masks_dir=image_folder.parent / "masks"))
    before = _snapshot(project)
    _bad_inputs(image_folder.parent / "bad")
    _, report = run(import_images(project, image_folder.parent / "bad", actor="dr_b"))
    assert sorted(report.added) == ["good", "huge"]  # huge is fine under the default limit
    images, versions = _snapshot(project)
    assert set(before[0]) <= set(images) and len(images) == len(before[0]) + 2
    assert versions == before[1]


def test_bad_masks_are_reported_and_the_image_still_imported(
    project: Project, tmp_path: Path
) -> None:
    rgb, mask = cell_image()
    write_rgb_png(tmp_path / "src" / "HSIL" / "a.png", rgb)
    write_rgb_png(tmp_path / "src" / "HSIL" / "b.png", rgb[::-1])
    write_rgb_png(tmp_path / "src" / "HSIL" / "c.png", rgb[:, ::-1])
    write_label_png(tmp_path / "m" / "a.png", mask * 100)  # values 0/100/200
    write_label_png(tmp_path / "m" / "b.png", mask[:10])  # wrong size
    write_label_png(tmp_path / "m" / "c.png", mask)
    _, report = run(import_images(project, tmp_path / "src", actor="t", masks_dir=tmp_path / "m"))
    assert len(report.added) == 3 and report.masks_added == 1
    assert len(report.problems) == 2
    assert any("a.png" in p and "0, 1 or 2" in p for p in report.problems)
    assert any("b.png" in p and "image is" in p for p in report.problems)


def test_manifest_import_with_labels(project: Project, tmp_path: Path) -> None:
    rgb, mask = cell_image()
    write_rgb_png(tmp_path / "data" / "images" / "x1.png", rgb)
    write_rgb_png(tmp_path / "data" / "images" / "x2.png", rgb[::-1])
    write_label_png(tmp_path / "data" / "masks" / "x1.png", mask)
    (tmp_path / "data" / "labels.csv").write_text("id,bethesda\nx1,lsil\nx2,HSIL\nx3,NILM\n")
    _, report = run(
        import_images(
            project,
            tmp_path / "data" / "labels.csv",
            actor="t",
            masks_dir=tmp_path / "data" / "masks",
            path_column="id",
            class_column="bethesda",
            image_dir=tmp_path / "data" / "images",
        )
    )
    assert sorted(report.added) == ["x1", "x2"] and report.masks_added == 1
    assert "x3" in report.problems[0] and "labels.csv line 4" in report.problems[0]
    assert project.image("x1").class_label == "LSIL"


def test_link_mode_keeps_images_in_place(project: Project, image_folder: Path) -> None:
    _, report = run(import_images(project, image_folder, actor="t", copy=False))
    record = project.image(report.added[0])
    assert record.stored_path is None and project.image_path(record).is_relative_to(image_folder)
    assert not any((project.root / "images").iterdir())


def test_cancel_keeps_what_was_imported(project: Project, image_folder: Path) -> None:
    token = CancelToken()
    job = import_images(project, image_folder, actor="t", cancel=token)
    next(job)
    next(job)
    token.cancel()
    _, report = run(job)
    assert report.cancelled and len(report.added) == 2
    assert len(project.images()) == 2


@pytest.mark.parametrize("label", ["nilm", "Nilm", "N.I.L.M"])
def test_loose_class_matching_on_folders(project: Project, tmp_path: Path, label: str) -> None:
    rgb, _ = cell_image()
    write_rgb_png(tmp_path / "src" / label / "a.png", rgb)
    run(import_images(project, tmp_path / "src", actor="t"))
    assert project.image("a").class_label == "NILM"


def test_every_refused_mask_is_one_warning_event(project: Project, tmp_path: Path) -> None:
    """A refused mask is shown without verbose output: a warning naming the file and reason."""
    rgb, mask = cell_image()
    for name, flip in (("a", 1), ("b", -1)):
        write_rgb_png(tmp_path / "src" / f"{name}.png", rgb[::flip])
    write_label_png(tmp_path / "m" / "a.png", mask * 100)  # values 0/100/200
    write_label_png(tmp_path / "m" / "b.png", mask[:10])  # wrong size
    events, report = run(
        import_images(project, tmp_path / "src", actor="t", masks_dir=tmp_path / "m")
    )
    warnings = [e.message for e in events if e.level == "warning"]
    assert len(warnings) == 2 and report.masks_added == 0
    assert any(str(tmp_path / "m" / "a.png") in w and "0, 1 or 2" in w for w in warnings)
    assert any(str(tmp_path / "m" / "b.png") in w and "image is" in w for w in warnings)


def test_a_mask_matching_two_images_is_attached_to_none(project: Project, tmp_path: Path) -> None:
    rgb, mask = cell_image()
    write_rgb_png(tmp_path / "src" / "a.png", rgb)
    tifffile.imwrite(tmp_path / "src" / "a.tif", rgb[::-1], photometric="rgb")
    write_rgb_png(tmp_path / "src" / "b.png", rgb[:, ::-1])
    write_label_png(tmp_path / "m" / "a.png", mask)
    write_label_png(tmp_path / "m" / "b.png", mask)
    events, report = run(
        import_images(project, tmp_path / "src", actor="t", masks_dir=tmp_path / "m")
    )
    assert len(report.added) == 3 and report.masks_added == 1
    assert project.current_versions().keys() == {project.image("b").id}
    [warning] = [e.message for e in events if e.level == "warning"]
    assert str(tmp_path / "m" / "a.png") in warning and "matches 2 images" in warning


def test_orphan_and_jpeg_masks_are_reported(project: Project, tmp_path: Path) -> None:
    rgb, mask = cell_image()
    write_rgb_png(tmp_path / "src" / "a.png", rgb)
    write_label_png(tmp_path / "m" / "a.png", mask)
    write_label_png(tmp_path / "m" / "nobody.png", mask)
    cv2.imwrite(str(tmp_path / "m" / "lossy.jpg"), mask)
    events, report = run(
        import_images(project, tmp_path / "src", actor="t", masks_dir=tmp_path / "m")
    )
    assert report.masks_added == 1
    warnings = sorted(e.message for e in events if e.level == "warning")
    assert len(warnings) == 2
    assert "lossy.jpg" in warnings[0] and "lossy compression" in warnings[0]
    assert "nobody.png" in warnings[1] and "no image named 'nobody'" in warnings[1]


def test_reimport_restores_a_deleted_image_file(project: Project, image_folder: Path) -> None:
    run(import_images(project, image_folder, actor="t"))
    record = project.image("nilm_1")
    project.image_path(record).unlink()
    events, report = run(import_images(project, image_folder, actor="t"))
    assert report.restored == ["nilm_1"] and len(report.already_present) == 5
    assert "1 restored" in report.summary
    [warning] = [e.message for e in events if e.level == "warning"]
    assert "restored nilm_1" in warning and "missing" in warning
    assert project.image_problem(record) is None


def test_multi_page_file_says_only_the_first_plane_is_used(
    project: Project, tmp_path: Path
) -> None:
    rgb, _ = cell_image()
    (tmp_path / "src").mkdir()
    tifffile.imwrite(
        tmp_path / "src" / "stack.tif", np.stack([rgb[..., 0]] * 3), photometric="minisblack"
    )
    events, report = run(import_images(project, tmp_path / "src", actor="t"))
    assert report.added == ["stack"]
    assert any("3 planes" in e.message and e.level == "warning" for e in events)
