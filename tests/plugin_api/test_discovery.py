"""Finding plugins: entry points, the built-in methods, broken and clashing plugins."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from cytoreview.errors import ConfigError
from cytoreview.plugin_api import ENTRY_POINT_GROUP, catalog, reset_catalog
from cytoreview.plugin_api.discovery import PluginWarning, discover

BUILTIN = "cytoreview.plugin_api.builtin:PLUGIN"


def _fake_distribution(root: Path, dist: str, module: str, source: str) -> None:
    """An installed-looking distribution (dist-info with an entry point) and its module."""
    info = root / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{dist} = {module}:PLUGIN\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


BROKEN = """
raise ImportError("needs libfancy 2, which is not installed")
"""

CLASHING = """
from cytoreview.plugin_api import Contribution, Plugin
PLUGIN = Plugin(name="clash", contributions=(
    Contribution(kind="segmenter", name="unet", description="another unet",
                 target="clash_mod:X"),
))
"""

NOT_A_PLUGIN = """
PLUGIN = {"name": "dict"}
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path where fake plugins are installed; the catalog is reset after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    reset_catalog()


def _ours(found) -> list[str]:
    return [line for line in found.broken if not line.startswith("cytoreview-")]


def test_the_builtin_methods_come_through_the_entry_point_group() -> None:
    eps = metadata.entry_points(group=ENTRY_POINT_GROUP)
    assert any(ep.value == BUILTIN for ep in eps), "pyproject declares the built-in plugin"
    found = discover()
    builtin = next(p for p in found.plugins if p.name == "cytoreview")
    assert [c.name for c in builtin.contributions if c.kind == "segmenter"] == ["unet"]
    assert found.plugins[0].name == "cytoreview"  # first: a plugin cannot take their names


def test_a_source_checkout_without_entry_points_still_finds_the_builtin_methods() -> None:
    found = discover(entry_points=[])
    assert found.names("segmenter") == ["unet"]
    assert found.broken == []


def test_a_plugin_that_fails_to_import_is_one_warning_and_the_rest_works(site) -> None:
    _fake_distribution(site, "cytoreview-broken", "broken_mod", BROKEN)
    with pytest.warns(PluginWarning, match="cytoreview-broken: ImportError") as caught:
        found = discover()
    lines = [b for b in found.broken if b.startswith("cytoreview-broken")]
    assert lines == ["cytoreview-broken: ImportError: needs libfancy 2, which is not installed"]
    assert "unet" in found.names("segmenter") and "fusion-gap" in found.names("classifier")
    assert sum("cytoreview-broken" in str(w.message) for w in caught) == 1


def test_a_clashing_or_malformed_plugin_is_skipped_by_name(site) -> None:
    _fake_distribution(site, "clash", "clash_mod", CLASHING)
    _fake_distribution(site, "dictplug", "dict_mod", NOT_A_PLUGIN)
    with pytest.warns(PluginWarning):
        found = discover()
    assert "clash: its segmenter 'unet' is already provided by cytoreview; skipped" in found.broken
    assert "dictplug: TypeError: the entry point gave dict, not a cytoreview Plugin" in found.broken
    assert [c.plugin for c in found.contributions("segmenter") if c.name == "unet"] == [
        "cytoreview"
    ]


def test_the_command_line_keeps_working_with_a_broken_plugin(site) -> None:
    _fake_distribution(site, "cytoreview-broken", "broken_mod", BROKEN)
    env_path = f"{site}"
    run = subprocess.run(
        [sys.executable, "-m", "cytoreview", "plugins"],
        capture_output=True, text=True, timeout=120,
        env={**_env(), "PYTHONPATH": env_path},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "unet" in run.stdout and "fusion-gap" in run.stdout
    warned = (run.stdout + run.stderr).count("needs libfancy 2")
    assert warned == 1, run.stdout + run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "cytoreview", "train-seg", "--help"],
        capture_output=True, text=True, timeout=120,
        env={**_env(), "PYTHONPATH": env_path},
    )  # fmt: skip
    assert run.returncode == 0 and "--encoder" in run.stdout


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_an_unknown_method_lists_the_installed_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown classifier 'svm'; valid: fusion-gap"):
        catalog().get("classifier", "svm")
    with pytest.raises(ConfigError, match="unknown contribution kind"):
        catalog().contributions("regressor")
