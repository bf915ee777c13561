"""Start-up cost: help and the project commands never import the deep-learning stack.

Importing torch, timm and segmentation-models-pytorch takes seconds; a user typing
``cytoreview --help`` or ``cytoreview status`` must not wait for them (nor for the GUI's Qt).
Each check runs in a fresh interpreter, since this test process has long imported everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import PATIENCE_S

#: Modules only the model commands (torch and co.), ``cytoreview gui`` (Qt) and a batch job that
#: runs on Dask (distributed) may load.
HEAVY = (
    "torch",
    "timm",
    "segmentation_models_pytorch",
    "onnxruntime",
    "napari",
    "PySide6",
    "qtpy",
    "distributed",
)

# Runs in a fresh interpreter: argv[1] the project, argv[2] the image folder, argv[3] where to
# write the heavy modules that got imported.
_SCRIPT = """
import json, sys
from cytoreview.launcher import main

project, images, out = sys.argv[1:4]
for argv in (["--help"], ["train-seg", "--help"], ["train-cls", "--help"], ["segment", "--help"],
             ["doctor", "--help"]):
    try:
        main(argv)
    except SystemExit as done:
        assert done.code == 0, (argv, done.code)
for argv in (["init", project], ["import", project, images], ["seeds", project, "--per-class", "1"],
             ["status", project], ["status", project, "--json"], ["audit", project]):
    assert main(argv) == 0, argv
heavy = json.loads(sys.argv[4])
with open(out, "w") as f:
    json.dump(sorted(m for m in heavy if m in sys.modules), f)
"""


def test_help_and_project_commands_load_no_deep_learning_or_gui(
    tmp_path: Path, image_folder: Path
) -> None:
    out = tmp_path / "loaded.json"
    env = {**os.environ, "CYTOREVIEW_USER": "tester", "COLUMNS": "100"}
    result = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path / "proj"), str(image_folder), str(out),
         json.dumps(HEAVY)],
        capture_output=True, text=True, timeout=PATIENCE_S, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "usage: cytoreview" in result.stdout and "6 image(s) added" in result.stdout
    assert json.loads(out.read_text()) == []
