"""Names are data: rich markup, emoji codes and HTML in paths, image and class names are shown
exactly as written, in the terminal and in the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from cytoreview.cli.main import main
from tests.conftest import cell_image, write_label_png, write_rgb_png

HOSTILE = "<img src=x onerror=alert(1)>"


def cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


def test_markup_and_html_in_names_are_shown_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # "[/]" closes nothing: unescaped, rich raised MarkupError and the command died.
    src, proj = tmp_path / "scans[" / "]data", tmp_path / "p[" / "]roj"
    # "<", ">" and ":" are made safe at import (storage.names); "&" and "'" are kept and
    # must reach the HTML escaped.
    names = {"[bold]NILM": [HOSTILE, "x&y'z :warning:"], "[red]HSIL": ["[italic]c"]}
    for k, (label, stems) in enumerate(names.items()):
        for i, stem in enumerate(stems):
            rgb, mask = cell_image(seed=10 * k + i)
            write_rgb_png(src / label / f"{stem}.png", rgb)
            write_label_png(tmp_path / "masks" / f"{stem}.png", mask)

    assert cli("init", proj, "--classes", *names, "--not-revisable", "[bold]NILM") == 0
    out = capsys.readouterr().out
    assert f"created project {proj}" in out and "classes: [bold]NILM, [red]HSIL" in out
    assert cli("import", proj, src, "--masks", tmp_path / "masks") == 0
    assert "3 image(s) added" in capsys.readouterr().out
    assert cli("seeds", proj, "--per-class", "1") == 0
    assert "[red]HSIL:   1 seed(s)" in capsys.readouterr().out
    assert cli("status", proj) == 0
    out = capsys.readouterr().out
    assert str(proj) in out and "[bold]NILM" in out and "[red]HSIL" in out

    report = tmp_path / "rep[" / "]ort"
    assert cli("report", proj, "--out", report) == 0
    captured = capsys.readouterr()
    assert f"report written: {report / 'report.html'}" in captured.out, captured.err
    html = (report / "report.html").read_text(encoding="utf-8")
    assert "<img src=x" not in html and "_img src=x onerror=alert(1)_" in html
    assert "x&amp;y&#x27;z _warning_" in html and "[italic]c" in html
