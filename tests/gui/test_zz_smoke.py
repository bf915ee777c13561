import time, numpy as np, pytest
from pathlib import Path
@pytest.mark.gui
def test_shot(make_napari_viewer, qtbot, tmp_path):
    from tests.gui.conftest import make_project
    from cytoreview.gui.app import build_workbench
    sp = make_project(tmp_path, n=8, painted=3)
    v = make_napari_viewer(show=True)
    t=time.time()
    wb = build_workbench(v, sp.root, actor="t")
    print("build", time.time()-t)
    v.window._qt_window.resize(1400, 900)
    wb.project_panel.next_image()
    qtbot.wait(300)
    Path("/tmp/gui_shots").mkdir(exist_ok=True)
    v.window._qt_window.grab().save("/tmp/gui_shots/smoke1.png")
    wb.docks["train"].raise_()
    qtbot.wait(200)
    v.window._qt_window.grab().save("/tmp/gui_shots/smoke2.png")
    print(wb.messages)
    wb.close()
