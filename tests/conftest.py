"""Shared fixtures: small synthetic images and projects made on the fly (never ../shared)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cytoreview.storage.project import Project
from cytoreview.types import CLASS_SCHEMES

#: How long a test waits for a condition or a signal before it fails (ms). Tests wait for a
#: state, never for a time: this only bounds a hang, so it is far above what a slow, shared
#: or single-core machine needs (waits return as soon as the condition holds).
PATIENCE_MS = 300_000
#: The same bound for a subprocess, in seconds.
PATIENCE_S = PATIENCE_MS // 1000


def write_rgb_png(path: Path, rgb: np.ndarray) -> Path:
    """Write an RGB uint8 array as PNG (test helper; the product writes through storage)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def write_label_png(path: Path, mask: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), mask.astype(np.uint8))
    return path


def cell_image(h: int = 40, w: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A tiny drawn cell (disc of cytoplasm with a nucleus) and its exact label mask."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    cy, cx = h // 2, w // 2
    cv2.circle(mask, (cx, cy), min(h, w) // 3, 1, -1)
    cv2.circle(mask, (cx, cy), max(2, min(h, w) // 8), 2, -1)
    rgb = np.full((h, w, 3), 235, np.uint8)
    rgb[mask == 1] = (90, 170, 180)
    rgb[mask == 2] = (60, 40, 110)
    noise = rng.integers(0, 12, (h, w, 3), dtype=np.uint8)
    return np.clip(rgb.astype(int) + noise, 0, 255).astype(np.uint8), mask


@pytest.fixture
def project(tmp_path: Path) -> Project:
    proj = Project.init(tmp_path / "proj", actor="tester", scheme=CLASS_SCHEMES["bethesda"])
    yield proj
    proj.close()


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """A folder tree: two classes, three images each, plus a masks folder beside it."""
    root = tmp_path / "scans"
    for k, label in enumerate(["NILM", "HSIL"]):
        for i in range(3):
            rgb, mask = cell_image(40 + i, 48, seed=10 * k + i)
            write_rgb_png(root / label / f"{label.lower()}_{i}.png", rgb)
            write_label_png(tmp_path / "masks" / f"{label.lower()}_{i}.png", mask)
    return root


def run_job(job) -> tuple[list, object]:
    """Drive a workflow generator to its end; return (progress events, result)."""
    events = []
    try:
        while True:
            events.append(next(job))
    except StopIteration as stop:
        return events, stop.value
