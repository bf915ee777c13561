"""Autosave keeps every stroke: a maximum wait while strokes keep coming, failed saves kept and
retried (disk full, no permission), never dropped by an image switch, a project switch or a close,
and an edit saved on top of another writer's version warns instead of hiding it."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest

from cytoreview.errors import ProjectError
from cytoreview.gui.annotate_panel import MASK_LAYER
from cytoreview.gui.autosave import DEFAULT_DELAY_MS, DEFAULT_MAX_WAIT_MS, retry_delay_ms
from cytoreview.storage.project import Project
from cytoreview.types import Provenance
from tests.conftest import PATIENCE_MS
from tests.gui.conftest import TEST_DELAY_MS, make_project
from tests.gui.test_annotate import open_by_name, stroke, wait_saved

pytestmark = pytest.mark.gui

#: Longer than any wait of these tests: a save that happens was started by something else.
NEVER_MS = 10 * PATIENCE_MS


class FailingDisk:
    """Makes the atomic write of mask files fail with ``error`` until :meth:`heal` is called."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, error: OSError) -> None:
        import cytoreview.storage.project as project_module

        self.error = error
        self.failures = 0
        real = project_module.atomic_write_bytes

        def write(path: Path, data: bytes, **kwargs) -> None:
            if self.error is not None and "masks" in Path(path).parts:
                self.failures += 1
                # A new exception each time: a raised one keeps its traceback's frames alive.
                raise type(self.error)(self.error.errno, self.error.strerror, self.error.filename)
            real(path, data, **kwargs)

        monkeypatch.setattr(project_module, "atomic_write_bytes", write)

    def heal(self) -> None:
        self.error = None


DISK_ERRORS = {
    "disk full": OSError(errno.ENOSPC, "No space left on device", "masks/x.png"),
    "no permission": PermissionError(errno.EACCES, "Permission denied", "masks/x.png"),
}


@pytest.fixture
def fast_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    import cytoreview.gui.autosave as autosave_module

    monkeypatch.setattr(autosave_module, "RETRY_FIRST_MS", 30)


def test_product_timings_and_back_off() -> None:
    assert DEFAULT_DELAY_MS <= DEFAULT_MAX_WAIT_MS <= 2000
    assert [retry_delay_ms(n) for n in (1, 2, 3, 6, 20)] == [1000, 2000, 4000, 30_000, 30_000]


def test_short_stroke_gaps_save_within_the_maximum_wait(
    make_napari_viewer, synth_project, qtbot
) -> None:
    """Strokes every 70 ms never leave the 'quiet' the debounce waits for (here: never); the
    maximum wait (200 ms) saves anyway, while the strokes keep coming (the scale of a person's
    0.7 s strokes against the product's 2 s)."""
    from cytoreview.gui.app import build_workbench

    viewer = make_napari_viewer()
    wb = build_workbench(viewer, synth_project.root, actor="t", autosave_delay_ms=NEVER_MS,
                         autosave_max_wait_ms=200)  # fmt: skip
    try:
        image_id = open_by_name(wb, sorted(synth_project.truth)[0])
        labels = viewer.layers[MASK_LAYER]
        labels.brush_size = 1
        n = 16
        for i in range(n):  # at least 16 x 70 ms = 1.1 s of painting
            stroke(labels, [(2 + 4 * (i // 8), 2 + 4 * (i % 8))], 1)
            qtbot.wait(70)
        # Saved while painting went on: the first version lacks the last stroke.
        qtbot.waitUntil(lambda: not wb.autosave._inflight, timeout=PATIENCE_MS)
        versions = wb.state.project.mask_versions(image_id)
        assert versions, "nothing was saved while strokes kept coming"
        first = wb.state.project.read_mask_version(versions[0])
        last_stroke = (2 + 4 * ((n - 1) // 8), 2 + 4 * ((n - 1) % 8))
        assert first[(2, 2)] == 1 and first[last_stroke] == 0
        wb.autosave.flush()
        assert np.array_equal(wb.state.project.current_mask(image_id)[1], labels.data)
    finally:
        wb.close()


@pytest.mark.parametrize("kind", sorted(DISK_ERRORS))
def test_a_failed_save_keeps_the_edit_tells_and_retries(
    workbench, qtbot, monkeypatch, fast_retry, kind: str
) -> None:
    disk = FailingDisk(monkeypatch, DISK_ERRORS[kind])
    project = workbench.state.project
    first, second = sorted(workbench.synth.truth)[:2]
    first_id = open_by_name(workbench, first)
    labels = workbench.viewer.layers[MASK_LAYER]
    stroke(labels, [(10, 10), (11, 11)], 2)
    painted = labels.data.copy()
    workbench.autosave.flush()
    assert disk.failures >= 1 and project.mask_versions(first_id) == []
    assert workbench.autosave.is_pending(first_id)
    # The person is told, in one line naming the image and the reason.
    reason = "no space left on device" if kind == "disk full" else "permission denied"
    status = workbench.annotate_panel.save_status.text()
    assert first in status and reason in status and "\n" not in status
    assert any(level == "error" and first in text and reason in text
               for level, text in workbench.messages)  # fmt: skip
    # Another image opens: the unsaved edit stays queued (and is retried meanwhile).
    open_by_name(workbench, second)
    assert workbench.autosave.is_pending(first_id)
    qtbot.waitUntil(lambda: disk.failures >= 3, timeout=PATIENCE_MS)  # retried by itself
    # Back on the first image: the unsaved strokes are what is shown, and painting goes on.
    open_by_name(workbench, first)
    assert np.array_equal(labels.data, painted)
    assert "UNSAVED" in workbench.annotate_panel.save_status.text()
    stroke(labels, [(20, 20)], 1)
    both = labels.data.copy()
    assert workbench.annotate_panel.approve() is None  # not approved while unsaved
    disk.heal()
    wait_saved(workbench, qtbot, first_id, 1)
    assert np.array_equal(project.current_mask(first_id)[1], both)
    assert project.mask_versions(first_id)[0].provenance is Provenance.MANUAL
    assert any(level == "info" and f"mask of {first} saved" in text
               for level, text in workbench.messages)  # fmt: skip


def test_a_close_with_unsaved_edits_asks_first(
    make_napari_viewer, synth_project, monkeypatch, fast_retry
) -> None:
    from cytoreview.gui.app import build_workbench

    disk = FailingDisk(monkeypatch, DISK_ERRORS["disk full"])
    viewer = make_napari_viewer()
    wb = build_workbench(viewer, synth_project.root, actor="t", autosave_delay_ms=NEVER_MS)
    window = viewer.window._qt_window
    name = sorted(synth_project.truth)[3]
    image_id = open_by_name(wb, name)
    stroke(viewer.layers[MASK_LAYER], [(9, 9)], 2)
    painted = viewer.layers[MASK_LAYER].data.copy()
    asked: list[list[str]] = []
    answers = ["keep", "retry"]

    def ask(lines: list[str]) -> str:
        asked.append(lines)
        return answers.pop(0)

    wb.ask_unsaved = ask
    # Another project cannot replace this one while the edit is unsaved.
    other = make_project(synth_project.root.parent / "other", n=2)
    with pytest.raises(ProjectError, match=name):
        wb.state.open_project(other.root)
    assert wb.state.project is not None and wb.autosave.is_pending(image_id)
    # Closing the window asks; "keep" keeps the window and the edit.
    window.close()
    assert len(asked) == 1 and name in asked[0][0] and "no space left" in asked[0][0]
    assert not wb.closed and wb.state.project is not None and wb.autosave.is_pending(image_id)
    # Asked again, the person frees space and tries again: saved, then closed.
    answers[:] = ["retry"]

    def heal_then_retry(lines: list[str]) -> str:
        disk.heal()
        return ask(lines)

    wb.ask_unsaved = heal_then_retry
    window.close()
    assert wb.closed and wb.state.project is None
    with Project.open(synth_project.root) as project:
        assert np.array_equal(project.current_mask(project.image(name).id)[1], painted)


def test_saving_over_another_writers_version_warns_and_keeps_both(workbench, qtbot) -> None:
    """Two windows (here: a second connection, as a CLI job or a second window would be)."""
    project = workbench.state.project
    name = sorted(workbench.synth.truth)[5]
    image_id = open_by_name(workbench, name)  # shown: no mask (version 0)
    other_mask = workbench.synth.truth[name]
    with Project.open(project.root) as other:
        other.save_mask(image_id, other_mask, Provenance.MANUAL, actor="colleague")
    stroke(workbench.viewer.layers[MASK_LAYER], [(1, 1)], 1)
    mine = workbench.viewer.layers[MASK_LAYER].data.copy()
    workbench.autosave.flush()
    versions = project.mask_versions(image_id)
    assert [(v.version, v.author) for v in versions] == [(1, "colleague"), (2, "tester")]
    assert np.array_equal(project.read_mask_version(versions[0]), other_mask)  # kept
    assert np.array_equal(project.read_mask_version(versions[1]), mine)
    assert "edited from v0" in versions[1].note
    assert any(level == "warning" and name in text and "colleague" in text
               for level, text in workbench.messages)  # fmt: skip
    # The next stroke starts from the version just saved: no further warning.
    warnings = sum(level == "warning" for level, _ in workbench.messages)
    stroke(workbench.viewer.layers[MASK_LAYER], [(3, 3)], 1)
    workbench.autosave.flush()
    assert len(project.mask_versions(image_id)) == 3
    assert sum(level == "warning" for level, _ in workbench.messages) == warnings


def test_opening_a_project_shows_its_first_image_to_paint(make_napari_viewer, tmp_path) -> None:
    from cytoreview.gui.app import build_workbench
    from cytoreview.workflows.seeds import first_image_to_paint

    synth = make_project(tmp_path, n=6, painted=2)
    names = sorted(synth.truth)
    with Project.open(synth.root) as project:
        assert first_image_to_paint(project) == project.image(names[2]).id  # first unpainted
        project.set_seeds([project.image(n).id for n in (names[0], names[4])], actor="t")
        seed_first = project.image(names[4]).id  # the painted seed is skipped
        assert first_image_to_paint(project) == seed_first
    viewer = make_napari_viewer()
    wb = build_workbench(viewer, synth.root, actor="t", autosave_delay_ms=TEST_DELAY_MS)
    try:
        assert wb.state.current_image_id == seed_first
        assert wb.annotate_panel.image_id == seed_first
        assert viewer.layers[MASK_LAYER].data.shape == synth.truth[names[4]].shape
        assert names[4] in wb.annotate_panel.title.text()
        # Opening a project from the panel does the same.
        other = make_project(tmp_path / "second", n=3)
        wb.project_panel.open_project(other.root)
        assert wb.annotate_panel.image_id == wb.state.project.image(sorted(other.truth)[0]).id
    finally:
        wb.close()
