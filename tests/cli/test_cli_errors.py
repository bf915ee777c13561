"""Every failure of a command is one line naming the file and the reason, exit status 1, no
traceback (``--debug`` shows it); a closed output pipe ends a command quietly."""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cytoreview.cli.main import EXIT_BROKEN_PIPE, main
from cytoreview.storage.project import CATALOG_FILE
from tests.conftest import PATIENCE_S, cell_image, write_label_png, write_rgb_png


def cli(*args: str | Path) -> int:
    return main([str(a) for a in args])


def one_error_line(capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("cytoreview ") and ": error: " in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def small(tmp_path: Path) -> Path:
    """A project with two images, one of them with a mask."""
    proj = tmp_path / "proj"
    for i, label in enumerate(["NILM", "HSIL"]):
        rgb, mask = cell_image(seed=i)
        write_rgb_png(tmp_path / "src" / label / f"{label.lower()}.png", rgb)
        if i == 0:
            write_label_png(tmp_path / "masks" / f"{label.lower()}.png", mask)
    assert cli("init", proj) == 0
    assert cli("import", proj, tmp_path / "src", "--masks", tmp_path / "masks") == 0
    return proj


def test_unwritable_out_is_one_line(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    capsys.readouterr()
    assert cli("export", small, "masks", "--out", blocker / "masks") == 1
    one_error_line(capsys, f"{blocker / 'masks'}: a part of the path is a file, not a folder")
    assert cli("export", small, "predictions", "--out", blocker / "p.csv") == 1
    one_error_line(capsys, f"{blocker}: is a file, not a folder")
    # Root may write anywhere, so the refusal is simulated where the crash-safe write makes its
    # temp file; the line names the file the person asked for, not the temp file.
    out = tmp_path / "locked" / "p.csv"

    def refuse(*args: object, **kwargs: object) -> tuple[int, str]:
        temp = out.with_name(f".{out.name}.x1y2z3.partial")
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(temp))

    with monkeypatch.context() as patch:
        patch.setattr("tempfile.mkstemp", refuse)
        assert cli("export", small, "predictions", "--out", out) == 1
    one_error_line(capsys, f"{out}: permission denied")


def test_disk_full_names_the_file(
    small: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:  # what write() or fsync() says on a full disk: no file name
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    capsys.readouterr()
    monkeypatch.setattr(os, "fsync", full)
    assert cli("export", small, "masks", "--out", tmp_path / "out") == 1
    one_error_line(capsys, str(tmp_path / "out" / "nilm.png"), "disk full")
    assert not list((tmp_path / "out").glob(".*"))  # no temp file left behind


def test_damaged_catalog_is_one_line(small: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(small / CATALOG_FILE) as conn:
        conn.execute("UPDATE meta SET value = '{broken' WHERE key = 'class_scheme'")
    capsys.readouterr()
    assert cli("status", small) == 1
    one_error_line(capsys, CATALOG_FILE, "class_scheme", "damaged")

    (small / CATALOG_FILE).write_bytes(b"garbage, not SQLite" * 100)
    for suffix in ("-wal", "-shm"):
        (small / f"{CATALOG_FILE}{suffix}").unlink(missing_ok=True)
    assert cli("status", small) == 1
    one_error_line(capsys, CATALOG_FILE)


def test_unexpected_error_is_one_line_and_debug_shows_it(
    small: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cytoreview.cli import commands_project

    def broken(project: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(commands_project, "project_status", broken)
    capsys.readouterr()
    assert cli("status", small) == 1
    one_error_line(capsys, "unexpected KeyError", "--debug")
    assert cli("--debug", "status", small) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in broken" in err
    assert err.strip().splitlines()[-1].startswith("cytoreview status: error: unexpected KeyError")


def test_markup_in_an_error_message_is_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "scans[" / "]x[bold]"  # the path holds "[/]" and "[bold]"
    assert cli("status", missing) == 1
    one_error_line(capsys, f"{missing}: not a CytoReview project")


def _env() -> dict[str, str]:
    """This checkout's cytoreview for a child process."""
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def test_closed_output_pipe_ends_quietly(small: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cytoreview", "status", str(small), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    proc.stdout.close()  # the reader is gone before the first line (`| head -0`)
    _, err = proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == EXIT_BROKEN_PIPE and err == b"", err.decode()


def test_library_noise_stays_out_of_the_terminal(tmp_path: Path) -> None:
    """libpng, OpenCV and tifffile print to stderr themselves; only CytoReview's lines show."""
    import struct

    import tifffile
    from PIL import Image

    src = tmp_path / "src" / "NILM"
    rgb, _ = cell_image(seed=1)
    good = write_rgb_png(src / "good.png", rgb).read_bytes()
    idat = good.index(b"IDAT") + 20
    (src / "flipped.png").write_bytes(good[:idat] + bytes([good[idat] ^ 0xFF]) + good[idat + 1 :])
    (src / "cut.png").write_bytes(good[: len(good) // 2])
    Image.fromarray(rgb).save(src / "odd-profile.png", icc_profile=b"x" * 200)
    tifffile.imwrite(src / "odd-tag.tif", rgb)
    data = bytearray((src / "odd-tag.tif").read_bytes())
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd : ifd + 2])[0]):
        if struct.unpack("<H", data[ifd + 2 + 12 * i : ifd + 4 + 12 * i])[0] == 296:
            struct.pack_into("<H", data, ifd + 4 + 12 * i, 99)  # ResolutionUnit: no such type
    (src / "odd-tag.tif").write_bytes(bytes(data))

    assert cli("init", tmp_path / "proj") == 0
    # In a fresh process: in this one pytest's log capture would hide what tifffile logs.
    done = subprocess.run(
        [sys.executable, "-m", "cytoreview", "import", str(tmp_path / "proj"), str(src.parent)],
        capture_output=True, text=True, timeout=PATIENCE_S, env=_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "3 image(s) added" in done.stdout and "2 problem(s)" in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2, done.stderr
    for name, line in zip(["cut.png", "flipped.png"], sorted(lines), strict=True):
        assert line.startswith("warning: ") and f"{name}: truncated or corrupt PNG (" in line
