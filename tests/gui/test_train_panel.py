"""Training and auto-segmenting from the GUI: progress, a responsive window, stop, table refresh."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from qtpy.QtCore import QTimer

from cytoreview.defaults import SEG
from cytoreview.workflows.segmentation import SegTrainRequest
from tests.conftest import PATIENCE_MS
from tests.gui.conftest import install_plugins, make_project

pytestmark = pytest.mark.gui

#: A training run small enough for a test: 64 px input, resnet18, one step per epoch.
TINY = {"settings": {"encoder": "resnet18"}, "input_size": 64, "batch_size": 8, "lr": 1e-3,
        "time_budget_min": 2.0, "device": "cpu"}  # fmt: skip


@pytest.fixture
def painted_workbench(make_napari_viewer, tmp_path: Path):
    from cytoreview.gui.app import build_workbench

    project = make_project(tmp_path, n=8, painted=5)
    viewer = make_napari_viewer(show=True)  # shown: the run's screenshot shows real curves
    viewer.window._qt_window.resize(1600, 1000)
    wb = build_workbench(viewer, project.root, actor="tester")
    wb.synth = project
    yield wb
    wb.close()


class TickCounter:
    """A GUI-thread timer: if it keeps ticking, the event loop is not blocked."""

    def __init__(self, interval_ms: int = 20) -> None:
        self.ticks = 0
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        self.ticks += 1


def save_screenshot(wb, qtbot, name: str) -> None:
    """Keep a picture of the window in $CYTOREVIEW_SHOTS_DIR (for a person to look at)."""
    folder = os.environ.get("CYTOREVIEW_SHOTS_DIR")
    if folder:
        qtbot.wait(100)
        wb.viewer.window._qt_window.grab().save(str(Path(folder) / name))


def statuses(wb) -> dict[str, str]:
    model = wb.project_panel.model
    return {model.row(i).name: model.row(i).status for i in range(model.rowCount())}


def test_training_reports_progress_then_auto_segment_fills_the_table(painted_workbench,
                                                                     qtbot) -> None:  # fmt: skip
    wb = painted_workbench
    panel = wb.train_panel
    assert not panel.segment_button.isEnabled()  # no model yet
    counter = TickCounter()
    ticks_at_events = []
    events = []

    def on_progress(event) -> None:
        events.append(event)
        ticks_at_events.append(counter.ticks)

    panel.runner.progress.connect(on_progress)
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.start_training(SegTrainRequest(epochs=2, **TINY))
        assert panel.stop_button.isEnabled() and not panel.start_button.isEnabled()
    report = panel.last_training
    assert report is not None and report.status == "finished", panel.log_view.toPlainText()
    assert len(report.history) == 2 and report.n_train + report.n_val == 5
    stages = [e.stage for e in events]
    assert {"prepare", "train", "epoch", "export"} <= set(stages)
    # The live curves got one point per epoch, with the losses and per-class IoU.
    assert [h["epoch"] for h in panel.history] == [1.0, 2.0]
    assert {"train_loss", "val_loss", "iou_cytoplasm", "iou_nucleus"} <= set(panel.history[0])
    assert (
        len(panel.plot.loss_axes.lines) == 2 and len(panel.plot.iou_axes.lines[0].get_xdata()) == 2
    )
    assert panel.device_label.text().startswith("Device: CPU")
    # The event loop kept running while the worker trained: the timer ticked between the
    # first and the last progress event (how regularly is a benchmark's business).
    assert ticks_at_events[-1] > ticks_at_events[0], ticks_at_events
    assert panel.segment_button.isEnabled() and "Auto-segment now" in panel.log_view.toPlainText()
    wb.docks["train"].raise_()
    save_screenshot(wb, qtbot, "workbench-train.png")

    # Only the rows selected in the project table, when asked.
    project_panel = wb.project_panel
    project = wb.state.project
    unpainted = sorted(set(wb.synth.truth) - set(wb.synth.painted))
    panel.selected_only.setChecked(True)
    project_panel.table.clearSelection()
    assert not panel.start_segmentation(device="cpu")  # nothing selected: nothing runs
    assert "no image selected" in wb.messages[-1][1]
    chosen = project.image(unpainted[-1]).id
    project_panel.table.selectRow(project_panel.proxy.proxy_row_of(chosen))
    assert project_panel.selected_image_ids() == [chosen]
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.start_segmentation(device="cpu")
    assert panel.last_segmentation.segmented == [unpainted[-1]]
    assert statuses(wb)[unpainted[0]] == "none"
    panel.selected_only.setChecked(False)

    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.start_segmentation(device="cpu")
    seg = panel.last_segmentation
    assert seg is not None and len(seg.segmented) == 3, panel.log_view.toPlainText()
    table = statuses(wb)
    painted = set(wb.synth.painted)
    assert {table[n] for n in painted} == {"manual"}  # a person's masks are left alone
    assert {table[n] for n in set(table) - painted} == {"auto"}
    # Again with test-time augmentation from the panel's check box: new auto versions.
    panel.tta_choice.setCurrentText("on")
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        assert panel.start_segmentation(device="cpu")
    assert "(8 views each)" in panel.log_view.toPlainText()
    assert panel.last_segmentation is not seg and len(panel.last_segmentation.segmented) == 3
    auto_image = sorted(set(table) - painted)[0]
    assert len(wb.state.project.mask_versions(wb.state.project.image(auto_image).id)) == 2
    wb.state.open_image(wb.state.project.image(auto_image).id)
    assert wb.viewer.layers["mask"].data.any()  # the auto mask is shown for correction
    assert "auto" in wb.annotate_panel.title.text()
    wb.docks["annotate"].raise_()
    save_screenshot(wb, qtbot, "workbench-after-auto-segment.png")
    counter.timer.stop()


def test_training_can_be_stopped_while_the_window_stays_responsive(painted_workbench,
                                                                   qtbot) -> None:  # fmt: skip
    wb = painted_workbench
    panel = wb.train_panel
    counter = TickCounter()
    steps = []
    panel.runner.progress.connect(lambda e: steps.append(e) if e.stage == "train" else None)
    # One image per step, so the stop lands inside an epoch (nothing to validate or export).
    panel.start_training(SegTrainRequest(epochs=500, **{**TINY, "batch_size": 1}))
    qtbot.waitUntil(lambda: any(e.step >= 1 for e in steps), timeout=PATIENCE_MS)
    # The window's event loop runs while the worker trains (its regularity: a benchmark).
    ticks = counter.ticks
    qtbot.waitUntil(lambda: counter.ticks > ticks + 5, timeout=PATIENCE_MS)
    assert panel.runner.is_running
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        panel.stop()
    report = panel.last_training
    assert report is not None and report.status == "cancelled"
    assert report.stop_reason == "cancelled" and len(report.history) < 500
    assert panel.eta_label.text() == "stopped" and panel.start_button.isEnabled()
    # Only whole epochs are in the history (the one the stop interrupted is not validated),
    # however many a slow GUI thread let pass before the stop arrived.
    assert [h.epoch for h in report.history] == list(range(1, len(report.history) + 1))
    assert (report.best is None) == (report.history == [])
    counter.timer.stop()


def test_not_enough_painted_masks_is_reported_not_raised(workbench, qtbot) -> None:
    panel = workbench.train_panel
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        panel.start_training(SegTrainRequest(epochs=1, **TINY))
    # The log names the method and every setting it runs with.
    assert panel.log_view.toPlainText().startswith(
        "training unet (encoder resnet18, decoder_width 128), up to 1"
    )
    assert "training needs at least 2" in panel.log_view.toPlainText()
    assert any(level == "error" for level, _ in workbench.messages)
    assert panel.start_button.isEnabled() and not panel.stop_button.isEnabled()


# -- methods, presets and mask generators from the plugin catalog ---------------------------------
@pytest.fixture
def panel(qtbot, test_plugins):
    from cytoreview.gui.state import WorkbenchState
    from cytoreview.gui.train_panel import TrainPanel

    widget = TrainPanel(WorkbenchState(actor="tester"))
    qtbot.addWidget(widget)
    return widget


def items(combo) -> list[str]:
    return [combo.itemText(i) for i in range(combo.count())]


def cli_request(*flags: str):
    """What ``train-seg proj FLAGS`` asks for (the parser is built from the current catalog)."""
    from cytoreview.cli.commands_seg import train_request
    from cytoreview.cli.main import build_parser

    return train_request(build_parser().parse_args(["train-seg", "proj", *flags]))


def test_the_methods_and_their_forms_come_from_the_catalog(panel, test_plugins) -> None:
    assert items(panel.method) == test_plugins.names("segmenter") == ["unet", "every-kind-net"]
    assert panel.method.currentText() == "unet"
    assert list(panel.method_form.widgets) == ["encoder", "decoder_width"]  # the U-Net's own
    assert items(panel.preset) == ["none", "unet-quick"]
    panel.method.setCurrentText("every-kind-net")
    assert list(panel.method_form.widgets) == ["depth", "lr_scale", "squeeze", "norm", "tag"]
    assert items(panel.preset) == ["none", "every-kind-deep"]
    panel.method_form.widgets["depth"].setValue(3)
    request = panel.request()
    assert (request.arch, dict(request.settings)) == ("every-kind-net", {"depth": 3})
    assert request == cli_request("--arch", "every-kind-net", "--every-kind-net-depth", "3")


def test_a_preset_fills_the_form_and_asks_for_what_the_cli_asks_for(panel) -> None:
    panel.preset.setCurrentText("unet-quick")
    assert (panel.epochs.value(), panel.input_size.value()) == (40, 128)
    assert panel.method_form.value("encoder") == "resnet34"
    # What the form does not show is said, and still applies.
    assert "also sets lr 0.002, loss jaccard" in panel.preset_note.text()
    request = panel.request()
    assert (request.preset, request.lr, request.loss) == ("unet-quick", 0.002, "jaccard")
    assert request == cli_request("--preset", "unet-quick")
    # What the user changes after choosing the preset wins, even a change back to a default.
    panel.epochs.setValue(60)
    panel.method_form.set_values({"encoder": "resnet18"})
    assert panel.request() == cli_request("--preset", "unet-quick", "--epochs", "60",
                                          "--encoder", "resnet18")  # fmt: skip
    # No preset again: the fields it filled go back to the defaults, the user's stay.
    panel.device.setCurrentText("cpu")
    panel.preset.setCurrentText("none")
    assert (panel.epochs.value(), panel.input_size.value()) == (SEG.epochs, 0)
    assert panel.device.currentText() == "cpu" and panel.preset_note.isHidden()
    assert panel.request() == cli_request("--device", "cpu")
    # Another method's preset fills that method's settings.
    panel.method.setCurrentText("every-kind-net")
    panel.preset.setCurrentText("every-kind-deep")
    assert panel.method_form.values() == {"depth": 6, "norm": "group"}
    assert panel.request() == cli_request("--preset", "every-kind-deep", "--device", "cpu")


def test_include_generated_reaches_the_request(panel) -> None:
    assert not panel.request().include_generated
    panel.include_generated.setChecked(True)
    assert panel.request() == cli_request("--include-generated")


def test_semi_supervised_training_is_off_by_default_and_reaches_the_request(panel) -> None:
    assert not panel.semi.isChecked() and not panel.request().semi
    assert "unpainted" in panel.semi.text() and "never saved" in panel.semi.toolTip()
    panel.semi.setChecked(True)
    assert panel.request() == cli_request("--semi")


def test_without_a_mask_generator_the_box_says_how_to_get_one(qtbot) -> None:
    from cytoreview.gui.state import WorkbenchState
    from cytoreview.gui.train_panel import TrainPanel
    from cytoreview.plugin_api import reset_catalog

    install_plugins()  # the built-in methods only: none of them makes masks
    try:
        panel = TrainPanel(WorkbenchState(actor="tester"))
        qtbot.addWidget(panel)
    finally:
        reset_catalog()
    assert not panel.generate_dialog.installed and panel.generate_dialog.name() is None
    assert not panel.generate_button.isEnabled()
    assert "install a plugin" in panel.generate_button.toolTip()
    assert not panel.start_generation()


@pytest.fixture
def generator_workbench(make_napari_viewer, tmp_path: Path, test_plugins):
    from cytoreview.gui.app import build_workbench

    project = make_project(tmp_path, n=6, painted=2)
    viewer = make_napari_viewer()
    wb = build_workbench(viewer, project.root, actor="tester")
    wb.synth = project
    yield wb
    wb.close()


def test_generate_masks_from_the_panel(generator_workbench, qtbot) -> None:
    from tests.plugins.sample_plugin import GENERATOR, DarkThresholdSettings

    wb = generator_workbench
    panel, project = wb.train_panel, wb.state.project
    dialog = panel.generate_dialog
    assert dialog.installed and items(dialog.generator) == ["dark-threshold"]
    assert list(dialog.form.widgets) == ["cell_below", "nucleus_below"]
    assert panel.generate_button.isEnabled()
    # Cancelling the dialog starts nothing.
    QTimer.singleShot(0, dialog.reject)
    panel.generate_button.click()
    assert not panel.runner.is_running and panel.last_generation is None
    events = []
    panel.runner.progress.connect(events.append)

    def choose() -> None:
        dialog.form.set_values({"cell_below": 200})
        dialog.generate_button.click()

    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        QTimer.singleShot(0, choose)
        panel.generate_button.click()
        assert not panel.generate_button.isEnabled()  # one job at a time
    report = panel.last_generation
    assert report is not None and not report.cancelled, panel.log_view.toPlainText()
    unpainted = sorted(set(wb.synth.truth) - set(wb.synth.painted))
    assert sorted(report.made) == unpainted
    assert sorted(report.skipped_human) == sorted(wb.synth.painted)
    assert report.settings == {"cell_below": 200, "nucleus_below": 64}
    assert [e.step for e in events if e.stage == "generate"][-1] == len(unpainted)
    assert "generating masks with dark-threshold (cell_below 200, nucleus_below 64)" in (
        panel.log_view.toPlainText()
    )
    settings = DarkThresholdSettings(cell_below=200)
    for name in unpainted:
        image = project.image(name)
        version = project.mask_versions(image.id)[-1]
        assert version.provenance.value == "auto"
        assert version.source_model == "generator:dark-threshold"
        expected = GENERATOR.generate(project.load_image(image).rgb, settings)
        assert (project.current_mask(image.id)[1] == expected).all()
    # The project table shows them at once, and a person's masks are left alone.
    assert statuses(wb) == {n: ("manual" if n in wb.synth.painted else "auto")
                            for n in wb.synth.truth}  # fmt: skip
    assert panel.eta_label.text() == "done" and panel.generate_button.isEnabled()


def test_compare_encoders_from_the_panel_with_the_forms_recipe(painted_workbench, qtbot) -> None:
    from cytoreview.gui.compare_dialog import CompareDialog, ComparisonTable
    from cytoreview.workflows.compare import PAPER_ENCODERS

    wb = painted_workbench
    panel = wb.train_panel
    assert panel.compare_button.isEnabled()  # the built-in U-Net has an encoder setting
    dialog = CompareDialog("unet", "unet, no preset", panel)
    assert dialog.encoders() == [e for e in dialog.boxes if e in PAPER_ENCODERS]
    for box in dialog.boxes.values():
        box.setChecked(False)
    assert not dialog.go.isEnabled()  # nothing to compare
    panel.epochs.setValue(1)
    panel.input_size.setValue(64)
    with qtbot.waitSignal(panel.runner.finished, timeout=4 * PATIENCE_MS):
        assert panel.ask_comparison(["resnet18", "mobilenet_v2"])
        assert not panel.compare_button.isEnabled() and not panel.start_button.isEnabled()
    report = panel.last_comparison
    assert report is not None, panel.log_view.toPlainText()
    assert [(r.encoder, r.status) for r in report.rows] == [
        ("resnet18", "finished"), ("mobilenet_v2", "finished"),
    ]  # fmt: skip
    assert report.recipe["epochs"] == 1 and report.table_csv.is_file()
    tables = [w for w in panel.findChildren(ComparisonTable) if w.isVisible()]
    assert len(tables) == 1 and tables[0].table.rowCount() == 2
    assert tables[0].table.item(1, 0).text() == "mobilenet_v2"
    assert "2 of 2 encoder(s) compared" in panel.log_view.toPlainText()


@pytest.fixture
def labels_workbench(make_napari_viewer, tmp_path: Path):
    """A workbench with a plain generator and one that learns from class labels installed."""
    from cytoreview.gui.app import build_workbench
    from cytoreview.plugin_api import reset_catalog

    install_plugins("tests.plugins.sample_plugin:PLUGIN", "tests.plugins.learning_methods:PLUGIN")
    project = make_project(tmp_path, n=6, painted=1)
    viewer = make_napari_viewer()
    wb = build_workbench(viewer, project.root, actor="tester")
    wb.synth = project
    yield wb
    wb.close()
    reset_catalog()


def test_masks_from_class_labels_from_the_panel(labels_workbench, qtbot) -> None:
    wb = labels_workbench
    panel, project = wb.train_panel, wb.state.project
    dialog = panel.labels_dialog
    # The generator that learns from labels is offered here, the pixel-only one under Generate.
    assert items(dialog.generator) == ["learnt-threshold"]
    assert items(panel.generate_dialog.generator) == ["dark-threshold"]
    assert dialog.windowTitle() == "Masks from class labels" and panel.labels_button.isEnabled()
    with qtbot.waitSignal(panel.runner.finished, timeout=PATIENCE_MS):
        QTimer.singleShot(0, dialog.generate_button.click)
        panel.labels_button.click()
    report = panel.last_generation
    assert report is not None and report.generator == "learnt-threshold"
    assert len(report.made) == 5 and report.fitted_model
    log = panel.log_view.toPlainText()
    assert "learnt first: thresholds" in log and "least sure first" in log
    for name in report.made:
        version = project.mask_versions(project.image(name).id)[-1]
        assert version.source_model == "generator:learnt-threshold"
        assert version.uncertainty == pytest.approx(report.uncertainties[name])


def test_without_a_label_learner_the_button_says_how_to_get_one(qtbot) -> None:
    from cytoreview.gui.state import WorkbenchState
    from cytoreview.gui.train_panel import TrainPanel
    from cytoreview.plugin_api import reset_catalog

    install_plugins("tests.plugins.sample_plugin:PLUGIN")  # a generator, but not from labels
    try:
        panel = TrainPanel(WorkbenchState(actor="tester"))
        qtbot.addWidget(panel)
    finally:
        reset_catalog()
    assert panel.generate_dialog.installed and not panel.labels_dialog.installed
    assert not panel.labels_button.isEnabled()
    assert "cytoreview-xai" in panel.labels_button.toolTip()
