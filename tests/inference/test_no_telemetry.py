"""Nothing leaves the machine: ONNX Runtime's telemetry is off before onnxruntime loads.

ONNX Runtime's official builds (1DS telemetry, on by default) create a device id and an event
queue under ``~/.cache/Microsoft/DeveloperTools/.onnxruntime`` as soon as the library is
imported, and look up the vendor's host about ten seconds later, from native code (curl inside
the library) that Python's socket module never sees. The tests run a small pipeline (export a
model to ONNX, run it in ONNX Runtime) in a fresh interpreter with its own home folder and check
the environment switch was set before the import, that no telemetry file appears, that Python
made no lookup or connection and, where ``strace`` exists (slow test), that the process made no
network connection at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import PATIENCE_S

REPO = Path(__file__).resolve().parents[2]

#: Hooks first (Python lookups refused and recorded, the switch read when onnxruntime is
#: imported), then the pipeline the ML commands run: export, session, inference.
PIPELINE = textwrap.dedent(
    """
    import json, os, socket, sys, time

    calls, switch = [], []

    def refuse(name):
        def hook(*args, **kwargs):
            calls.append([name, repr(args[:2])])
            raise OSError("network use refused by the test")
        return hook

    socket.getaddrinfo = refuse("getaddrinfo")
    socket.gethostbyname = refuse("gethostbyname")
    socket.create_connection = refuse("create_connection")
    socket.socket.connect = refuse("connect")

    class WatchImports:
        def find_spec(self, name, path=None, target=None):
            if name == "onnxruntime":
                switch.append(os.environ.get("ORT_DISABLE_TELEMETRY"))
            return None

    sys.meta_path.insert(0, WatchImports())

    import numpy as np
    import torch
    from cytoreview.inference.onnx_export import export_onnx
    from cytoreview.inference.predictors import OnnxPredictor

    model = torch.nn.Conv2d(3, 3, 1)
    predictor = OnnxPredictor(export_onnx(model, 32), device="cpu", threads=1)
    probs = predictor(np.zeros((1, 3, 32, 32), np.float32))
    assert probs.shape == (1, 3, 32, 32)
    time.sleep(float(sys.argv[1]))  # the native uploader starts its lookup ~10 s in
    print(json.dumps({"calls": calls, "switch": switch}))
    """
)


def _run(home: Path, wait_s: float, prefix: list[str] = ()) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), PYTHONPATH=str(REPO))
    done = subprocess.run(
        [*prefix, sys.executable, "-c", PIPELINE, str(wait_s)],
        capture_output=True, text=True, env=env, timeout=PATIENCE_S, cwd=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_pipeline_sends_nothing(tmp_path: Path) -> None:
    result = _run(tmp_path, 0)
    assert result["switch"] == ["1"], "onnxruntime was imported before telemetry was off"
    assert result["calls"] == []
    telemetry = tmp_path / ".cache" / "Microsoft"
    assert not telemetry.exists(), sorted(map(str, telemetry.rglob("*")))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_no_network_connection_from_native_code(tmp_path: Path) -> None:
    trace = tmp_path / "trace.txt"
    prefix = ["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg", "-o", str(trace)]
    result = _run(tmp_path, 15, prefix)
    assert result["calls"] == []
    inet = [line for line in trace.read_text().splitlines() if "AF_INET" in line]
    assert inet == [], inet[:5]
