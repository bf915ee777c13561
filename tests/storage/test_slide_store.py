"""Slides registered as sources of a project; crops cut from them as ordinary images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cytoreview.data.synthetic_slide import SyntheticSlide
from cytoreview.errors import InputFileError, ProjectError
from cytoreview.storage.project import Project
from cytoreview.storage.slide_store import SlideStore
from cytoreview.storage.slides import write_pyramid_tiff


@pytest.fixture(scope="module")
def slide_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    pixels, _ = SyntheticSlide(768, 1024, seed=3, field=256).region(0, 0, 768, 1024)
    path = tmp_path_factory.mktemp("slides") / "case 7.svs"
    write_pyramid_tiff(path, pixels, levels=2, pixel_size_um=0.25, flavour="aperio")
    return path, pixels


def test_a_slide_is_registered_linked_with_its_levels_hash_and_pixel_size(
    project: Project, slide_file: tuple[Path, np.ndarray]
) -> None:
    path, _ = slide_file
    store = SlideStore(project)
    outcome = store.register(path, actor="ana")
    slide = outcome.record
    assert outcome.status == "added" and slide.name == "case 7"
    assert slide.stored_path is None and store.path(slide) == path.resolve()
    assert (slide.width, slide.height) == (1024, 768)
    assert [(lv.height, lv.width, lv.downsample) for lv in slide.levels] == [
        (768, 1024, 1.0),
        (384, 512, 2.0),
    ]
    assert slide.pixel_size_um == pytest.approx(0.25)
    assert slide.level_pixel_size(1) == pytest.approx(0.5)
    assert len(slide.sha256) == 64
    assert project.images() == []  # a source, not an image
    again = store.register(path, actor="ana")
    assert again.status == "present" and again.record.id == slide.id
    assert [s.name for s in store.slides()] == ["case 7"]
    actions = [e.action for e in project.audit_entries()]
    assert actions.count("register_slide") == 1


def test_a_copied_slide_lives_in_the_project(
    project: Project, slide_file: tuple[Path, np.ndarray]
) -> None:
    path, pixels = slide_file
    store = SlideStore(project)
    slide = store.register(path, actor="ana", copy=True, pixel_size_um=0.3).record
    assert slide.stored_path == "slides/case 7.svs"
    assert slide.pixel_size_um == pytest.approx(0.3)  # given beats metadata
    with store.open(slide) as opened:
        assert np.array_equal(opened.read_region(0, 10, 20, 30, 40), pixels[10:40, 20:60])


def test_a_crop_is_an_ordinary_image_that_remembers_its_slide(
    project: Project, slide_file: tuple[Path, np.ndarray]
) -> None:
    path, _ = slide_file
    store = SlideStore(project)
    slide = store.register(path, actor="ana").record
    with store.open(slide) as opened:
        rgb = opened.read_region(1, 50, 60, 64, 64)
    outcome = store.add_crop(slide, rgb, level=1, x=120, y=100, actor="ana")
    image = outcome.record
    assert outcome.status == "added"
    assert (image.slide_id, image.slide_level, image.slide_x, image.slide_y) == (
        slide.id, 1, 120, 100,
    )  # fmt: skip
    assert image.pixel_size_um == pytest.approx(0.5)  # level 1 of a 0.25 um/px slide
    assert image.stored_path and image.stored_path.endswith(".png")
    assert np.array_equal(project.load_image(image).rgb, rgb)  # lossless
    assert [c.id for c in store.crops(slide)] == [image.id]
    same = store.add_crop(slide, rgb, level=1, x=120, y=100, actor="ana")
    assert same.status == "present" and len(project.images()) == 1
    # Reopened (a new process): the origin is still there.
    root = project.root
    project.close()
    with Project.open(root) as reopened:
        assert reopened.image(image.id).slide_x == 120


def test_bad_slides_and_names_are_one_line(
    project: Project, slide_file: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    store = SlideStore(project)
    junk = tmp_path / "junk.ndpi"
    junk.write_bytes(b"nothing")
    with pytest.raises(InputFileError, match=r"junk\.ndpi"):
        store.register(junk, actor="ana")
    with pytest.raises(ProjectError, match="no slide 'nope'"):
        store.slide("nope")
    path, _ = slide_file
    with pytest.raises(InputFileError, match="pixel size"):
        store.register(path, actor="ana", pixel_size_um=500.0)
    mrxs = tmp_path / "scan.mrxs"
    mrxs.write_bytes(b"x")
    with pytest.raises(InputFileError):
        store.register(mrxs, actor="ana", copy=True)
    assert store.slides() == []


def test_a_moved_linked_slide_is_named_when_opened(
    project: Project, slide_file: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    path, _ = slide_file
    moved = tmp_path / "moving.svs"
    moved.write_bytes(path.read_bytes())
    store = SlideStore(project)
    slide = store.register(moved, actor="ana").record
    moved.unlink()
    with pytest.raises(InputFileError, match="missing"):
        store.open(slide)


def test_check_names_a_slide_that_moved_or_changed(
    project: Project, slide_file: tuple[Path, np.ndarray], tmp_path: Path
) -> None:
    from cytoreview.workflows.check import check_project
    from tests.conftest import run_job

    path, _ = slide_file
    moved = tmp_path / "moving.svs"
    moved.write_bytes(path.read_bytes())
    SlideStore(project).register(moved, actor="ana")
    _, report = run_job(check_project(project.root, actor="t"))
    assert report.ok
    with open(moved, "ab") as fh:  # bytes added: the registered slide is not this file
        fh.write(b"changed")
    _, report = run_job(check_project(project.root, actor="t", repair=True))
    (finding,) = [f for f in report.findings if f.entity == "slide"]
    assert finding.kind == "linked-source" and "slide 'moving'" in finding.message
    assert moved.exists()  # a repair never touches the scanner's file
