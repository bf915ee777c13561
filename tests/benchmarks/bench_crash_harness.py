"""Crash harness: SIGKILL the command line at random moments and check the project after each kill.

For each job type (import, train-seg, segment, train-cls, classify, report; explain on request)
the harness copies a small synthetic project made once per ``--workdir``, runs the job as a
separate ``python -m cytoreview`` process group, kills the whole group with SIGKILL at a random
moment inside the window where the job writes, and then checks, in this order:

1. ``check`` without repair (every temp file counts, ``temp_age_s=0``): any ``damage`` finding
   (catalog integrity or foreign keys, a referenced file missing or with other bytes, a
   checkpoint or heatmap whose checksums fail) is a **corruption**; ``leftover`` findings
   (temp files, unreferenced files, the killed training run) are counted by kind;
2. the project opens (``Project.open``; a failure is a corruption);
3. every mask version a person made before the kill (manual, corrected, approved) still has
   its row, path and hash, and its file those bytes (**person's masks lost** otherwise);
4. ``check --repair`` leaves no problem (``repair failed`` otherwise);
5. for ``report``: no half-written file in the output folder (temp files are counted apart;
   every HTML page is complete and every PNG passes its checksums).

The kill moment is uniform between just before the job's first write and its end, both
measured by one uncut run per job type (polling the catalog, or the output folder, every 20 ms).
Prints one JSON object; progress goes to standard error. Run under ``nice -n 19`` on a shared
machine::

    nice -n 19 .venv/bin/python tests/benchmarks/bench_crash_harness.py --kills 20

GUI painting under Xvfb is not a job type here (engineer D's area): :class:`JobSpec` takes any
command, and :func:`run_kills` any spec, so a script that paints in the workbench can be killed
the same way, with ``extra_check`` counting the strokes lost.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cytoreview.errors import CytoReviewError  # noqa: E402
from cytoreview.storage.integrity import DAMAGE, LEFTOVER, is_temp_name, png_crc_ok  # noqa: E402
from cytoreview.storage.project import CATALOG_FILE, Project  # noqa: E402
from cytoreview.workflows.check import check_project  # noqa: E402

#: Job types run by default, in order.
JOBS = ("import", "train-seg", "segment", "train-cls", "classify", "report")
#: How often the uncut run looks for the job's first write.
_POLL_S = 0.02
#: Seconds a job may take before the harness gives up on it.
_JOB_LIMIT_S = 900


def cli_command(*args: str | Path) -> list[str]:
    """The command line of one ``cytoreview`` call in a fresh interpreter."""
    return [sys.executable, "-m", "cytoreview", "--user", "harness", *map(str, args)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "CYTOREVIEW_USER": "harness"}


def _run(cmd: list[str], log: Path) -> None:
    with open(log, "ab") as out:
        done = subprocess.run(cmd, stdout=out, stderr=out, env=_env(), timeout=_JOB_LIMIT_S)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{tail}")


# -- the synthetic projects ---------------------------------------------------------------------
#: Templates in the order they are made; each starts from the one before.
TEMPLATES = ("base", "trained", "segmented", "classifier", "classified")
#: The template each job type starts from.
JOB_TEMPLATE = {
    "import": "base",
    "train-seg": "base",
    "segment": "trained",
    "train-cls": "segmented",
    "classify": "classifier",
    "report": "classified",
    "explain": "classified",
}


@dataclass
class Workspace:
    """Data and template projects, made once per work folder.

    Templates: ``base`` (``n_images`` images, ``n_painted`` of them painted by hand), ``trained``
    (+ a U-Net, and the int8 gate already measured), ``segmented`` (+ auto masks),
    ``classifier`` (+ a tiny classifier), ``classified`` (+ predictions).
    """

    root: Path
    n_images: int = 40
    n_painted: int = 16

    @property
    def data(self) -> Path:
        return self.root / "data"

    def template(self, name: str) -> Path:
        return self.root / "templates" / name

    def _write_data(self) -> None:
        # In this process: the data is written once, and the harness has cytoreview at hand.
        from cytoreview.workflows.demo import write_demo_data

        for name, seed in (("base", 0), ("more", 1)):
            _drive(write_demo_data(self.data / name, self.n_images, seed=seed, field_fraction=0))
        painted = self.data / "base" / "painted"
        painted.mkdir(exist_ok=True)
        for mask in sorted((self.data / "base" / "masks").glob("*.png"))[: self.n_painted]:
            shutil.copy2(mask, painted / mask.name)

    def build(self, upto: str = TEMPLATES[-1]) -> None:
        """Make the templates up to ``upto``; each step is skipped when its result exists."""
        log = self.root / "setup.log"
        self.root.mkdir(parents=True, exist_ok=True)
        if not (self.data / "base" / "painted").is_dir():
            self._write_data()
        # Each template is its parent after one uncut job of the kind killed from the parent.
        steps = {
            "trained": "train-seg",
            "segmented": "segment",
            "classifier": "train-cls",
            "classified": "classify",
        }
        for i, name in enumerate(TEMPLATES[: TEMPLATES.index(upto) + 1]):
            target = self.template(name)
            if (target / ".complete").exists():
                continue
            if target.exists():
                shutil.rmtree(target)
            if i == 0:
                _run(cli_command("init", target), log)
                _run(
                    cli_command(
                        "import",
                        target,
                        self.data / "base" / "images",
                        "--masks",
                        self.data / "base" / "painted",
                    ),
                    log,
                )
            else:
                shutil.copytree(self.template(TEMPLATES[i - 1]), target)
                (target / ".complete").unlink()
                _run(cli_command(steps[name], target, *JOB_ARGS[steps[name]]), log)
                if name == "trained":  # measure the int8 gate once, on one image
                    first = _image_names(target)[-1]
                    _run(cli_command("segment", target, "--images", first), log)
            (target / ".complete").write_text("done\n")

    def copy(self, template: str, dest: Path) -> Path:
        """A private copy of a template: hard links for files never changed in place (every
        file CytoReview writes is replaced atomically), real copies of the catalog."""
        source = self.template(template)

        def copy_file(src: str, dst: str) -> None:
            if Path(src).name.startswith(CATALOG_FILE):
                shutil.copy2(src, dst)
            else:
                os.link(src, dst)

        shutil.copytree(source, dest, copy_function=copy_file)
        (dest / ".complete").unlink()
        return dest


def _image_names(root: Path) -> list[str]:
    conn = sqlite3.connect(root / CATALOG_FILE)
    try:
        return [r[0] for r in conn.execute("SELECT name FROM images ORDER BY name")]
    finally:
        conn.close()


def human_masks(root: Path) -> dict[int, tuple[str, str]]:
    """A person's mask versions: id -> (path, sha256) as catalogued."""
    conn = sqlite3.connect(root / CATALOG_FILE)
    try:
        rows = conn.execute(
            "SELECT id, path, sha256 FROM mask_versions WHERE provenance != 'auto'"
        ).fetchall()
    finally:
        conn.close()
    return {int(i): (str(p), str(s)) for i, p, s in rows}


# -- job types ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobSpec:
    """A job to kill.

    Parameters
    ----------
    name
        Job type, as reported.
    template
        The workspace template a trial starts from.
    command
        (project, trial folder) -> the command line to run and kill.
    watch
        (project, trial folder) -> files whose change means the job has begun writing.
    out_dir
        (project, trial folder) -> an output folder outside the project to check, if any.
    extra_check
        (project, trial folder) -> more numbers for the trial (e.g. strokes lost in the GUI).
    """

    name: str
    template: str
    command: Callable[[Path, Path], list[str]]
    watch: Callable[[Path, Path], list[Path]]
    out_dir: Callable[[Path, Path], Path | None] = lambda project, trial: None
    extra_check: Callable[[Path, Path], dict[str, Any]] | None = None


def _catalog_files(project: Path, trial: Path) -> list[Path]:
    return [project / CATALOG_FILE, project / f"{CATALOG_FILE}-wal"]


#: The arguments of each job type after the project.
JOB_ARGS: dict[str, list[Any]] = {
    "train-seg": ["--epochs", 2, "--input-size", 64, "--patience", 2],
    "segment": [],
    "train-cls": [
        "--epochs",
        2,
        "--backbone",
        "test_resnet",
        "--mask-backbone",
        "test_resnet",
        "--input-size",
        64,
    ],
    "classify": [],
    "explain": [],
}


def job_specs(ws: Workspace) -> dict[str, JobSpec]:
    """The job types of the harness."""
    more = ws.data / "more"

    def in_project(job: str) -> JobSpec:
        return JobSpec(
            job,
            JOB_TEMPLATE[job],
            lambda p, t: cli_command(job, p, *JOB_ARGS[job]),
            _catalog_files,
        )

    specs = {job: in_project(job) for job in JOB_ARGS}
    specs["import"] = JobSpec(
        "import",
        JOB_TEMPLATE["import"],
        lambda p, t: cli_command("import", p, more / "images", "--masks", more / "masks"),
        _catalog_files,
    )
    specs["report"] = JobSpec(
        "report",
        JOB_TEMPLATE["report"],
        lambda p, t: cli_command("report", p, "--out", t / "report"),
        lambda p, t: [t / "report"],
        out_dir=lambda p, t: t / "report",
    )
    return specs


# -- one trial ----------------------------------------------------------------------------------
def _stamp(paths: list[Path]) -> tuple[tuple[int, int], ...]:
    out = []
    for path in paths:
        try:
            st = path.stat()
            out.append((st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((0, -1))
    return tuple(out)


def _start(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in a session of its own (so its whole process group can be killed)."""
    with open(log, "wb") as handle:  # the child holds its own copy of the descriptor
        return subprocess.Popen(
            cmd, stdout=handle, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
        )


@dataclass
class Calibration:
    """One uncut run: how long the job takes and when it first writes."""

    seconds: float
    first_write_s: float


def calibrate(spec: JobSpec, ws: Workspace, folder: Path) -> Calibration:
    """Run the job once to its end, noting when its watched files first change."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    project = ws.copy(spec.template, folder / "project")
    watched = spec.watch(project, folder)
    before = _stamp(watched)
    start = time.monotonic()
    proc = _start(spec.command(project, folder), folder / "log.txt")
    first: float | None = None
    try:
        while proc.poll() is None:
            if first is None and _stamp(watched) != before:
                first = time.monotonic() - start
            time.sleep(_POLL_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    seconds = time.monotonic() - start
    if proc.returncode != 0:
        tail = (folder / "log.txt").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{spec.name}: the uncut run failed ({proc.returncode}):\n{tail}")
    shutil.rmtree(folder)
    return Calibration(round(seconds, 2), round(first if first is not None else 0.0, 2))


@dataclass
class Trial:
    """What one kill did to the project."""

    job: str
    kill_at_s: float
    killed: bool
    exit_code: int | None = None
    #: Seconds the job ran (its whole run when it finished before the kill).
    ran_s: float = 0.0
    damage: list[str] = field(default_factory=list)
    leftovers: dict[str, int] = field(default_factory=dict)
    open_error: str | None = None
    masks_lost: list[str] = field(default_factory=list)
    repair_left: list[str] = field(default_factory=list)
    repair_actions: dict[str, int] = field(default_factory=dict)
    out_temp_files: int = 0
    out_broken_files: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def corrupted(self) -> bool:
        """Damage found, the project would not open, or a report file is half-written."""
        return bool(self.damage or self.open_error or self.out_broken_files)


def _drive(job: Any) -> Any:
    try:
        while True:
            next(job)
    except StopIteration as stop:
        return stop.value


def _masks_lost(root: Path, before: dict[int, tuple[str, str]]) -> list[str]:
    from cytoreview.storage.hashing import file_sha256

    after = human_masks(root)
    lost = []
    for version_id, (path, sha) in before.items():
        if after.get(version_id) != (path, sha):
            lost.append(f"mask version {version_id}: row missing or changed")
            continue
        try:
            if file_sha256(root / path) != sha:
                lost.append(f"{path}: bytes changed")
        except OSError:
            lost.append(f"{path}: file missing")
    return lost


def _complete(path: Path) -> bool:
    """An HTML page ends with its closing tag; a PNG passes its chunk checksums."""
    if path.suffix == ".html":
        return path.read_text(errors="replace").rstrip().endswith("</html>")
    if path.suffix == ".png":
        return png_crc_ok(path)
    return True


def _check_out_dir(out: Path | None, trial: Trial) -> None:
    if out is None or not out.is_dir():
        return
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        if is_temp_name(path.name):
            trial.out_temp_files += 1
        elif not _complete(path):
            trial.out_broken_files.append(str(path.relative_to(out)))


def kill_trial(spec: JobSpec, ws: Workspace, folder: Path, kill_at_s: float) -> Trial:
    """Copy the template, run the job, SIGKILL its process group at ``kill_at_s``, check."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    project = ws.copy(spec.template, folder / "project")
    before = human_masks(project)
    proc = _start(spec.command(project, folder), folder / "log.txt")
    started = time.monotonic()
    try:
        while proc.poll() is None and time.monotonic() - started < kill_at_s:
            time.sleep(0.005)
        ran_s = time.monotonic() - started
    finally:
        killed = proc.poll() is None
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group, as a power cut would
        proc.wait()
    trial = Trial(spec.name, round(kill_at_s, 2), killed, None if killed else proc.returncode)
    trial.ran_s = round(ran_s, 2)

    first = _drive(check_project(project, actor="harness", temp_age_s=0.0))
    trial.damage = [f.line() for f in first.findings if f.severity == DAMAGE]
    trial.leftovers = dict(Counter(f.kind for f in first.findings if f.severity == LEFTOVER))
    try:
        with Project.open(project):
            pass
    except (CytoReviewError, sqlite3.Error, OSError) as exc:
        trial.open_error = f"{type(exc).__name__}: {exc}"
    trial.masks_lost = _masks_lost(project, before)
    repaired = _drive(check_project(project, actor="harness", repair=True, temp_age_s=0.0))
    trial.repair_left = [f.line() for f in repaired.problems]
    trial.repair_actions = dict(Counter(a.action for a in repaired.actions))
    _check_out_dir(spec.out_dir(project, folder), trial)
    if spec.extra_check is not None:
        trial.extra = spec.extra_check(project, folder)
    return trial


# -- many trials --------------------------------------------------------------------------------
@dataclass
class JobSummary:
    """Counts for one job type."""

    job: str
    uncut_run_s: float
    first_write_s: float
    kills: int = 0
    finished_before_kill: int = 0
    corruptions: int = 0
    persons_masks_lost: int = 0
    open_failures: int = 0
    repair_failures: int = 0
    report_temp_files: int = 0
    leftovers: dict[str, int] = field(default_factory=dict)
    repair_actions: dict[str, int] = field(default_factory=dict)
    problems: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def run_kills(
    spec: JobSpec,
    ws: Workspace,
    kills: int,
    rng: random.Random,
    *,
    max_s: float | None = None,
    keep_failures: Path | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> JobSummary:
    """Kill ``spec`` until ``kills`` kills landed (or ``max_s`` passed); return the counts."""
    start = time.monotonic()
    work = ws.root / "trials" / spec.name
    cal = calibrate(spec, ws, work / "uncut")
    summary = JobSummary(spec.name, cal.seconds, cal.first_write_s)
    log(f"{spec.name}: uncut run {cal.seconds:.1f} s, first write at {cal.first_write_s:.1f} s")
    low = max(0.0, cal.first_write_s - 0.3)
    # The end of the window follows the runs that finished before their kill: on a shared
    # machine one uncut run can take twice as long as the next ones.
    finished = [cal.seconds]
    attempt = 0
    while summary.kills < kills and (max_s is None or time.monotonic() - start < max_s):
        attempt += 1
        folder = work / f"trial-{attempt:04d}"
        high = max(low + 0.5, statistics.median(finished[-5:]))
        trial = kill_trial(spec, ws, folder, rng.uniform(low, high))
        if not trial.killed:
            finished.append(trial.ran_s)
        summary.kills += trial.killed
        summary.finished_before_kill += not trial.killed
        summary.corruptions += trial.corrupted
        summary.persons_masks_lost += len(trial.masks_lost)
        summary.open_failures += trial.open_error is not None
        summary.repair_failures += bool(trial.repair_left)
        summary.report_temp_files += trial.out_temp_files
        for kind, n in trial.leftovers.items():
            summary.leftovers[kind] = summary.leftovers.get(kind, 0) + n
        for action, n in trial.repair_actions.items():
            summary.repair_actions[action] = summary.repair_actions.get(action, 0) + n
        bad = trial.corrupted or trial.masks_lost or trial.repair_left
        if bad:
            summary.problems.append(asdict(trial))
            if keep_failures is not None:
                shutil.copytree(folder, keep_failures / spec.name / folder.name)
        shutil.rmtree(folder, ignore_errors=True)
        log(
            f"{spec.name} #{attempt}: kill at {trial.kill_at_s:.2f} s "
            f"({'killed' if trial.killed else 'had finished'}); "
            f"{'PROBLEM' if bad else 'ok'}; leftovers {trial.leftovers or 'none'}"
        )
    summary.seconds = round(time.monotonic() - start, 1)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Run the harness and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--jobs",
        nargs="+",
        default=list(JOBS),
        choices=[*JOBS, "explain"],
        help="job types (default: all but explain)",
    )
    parser.add_argument("--kills", type=int, default=100, help="kills per job type (default 100)")
    parser.add_argument("--minutes", type=float, help="stop each job type after this long")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/cytoreview-crash-harness"))
    parser.add_argument("--seed", type=int, default=0, help="random seed of the kill moments")
    parser.add_argument("--keep-failures", type=Path, help="copy trials with problems here")
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    # A stopped harness kills the job it is running (the finally in kill_trial).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    logging.basicConfig(level=logging.ERROR)  # "run N was interrupted" is the expected outcome

    start = time.monotonic()
    ws = Workspace(args.workdir)
    log(f"building the synthetic projects in {ws.root} (once)")
    ws.build(max((JOB_TEMPLATE[j] for j in args.jobs), key=TEMPLATES.index))
    specs = job_specs(ws)
    rng = random.Random(args.seed)
    results = {}
    for name in args.jobs:
        summary = run_kills(
            specs[name],
            ws,
            args.kills,
            rng,
            max_s=args.minutes * 60 if args.minutes else None,
            keep_failures=args.keep_failures,
            log=log,
        )
        results[name] = asdict(summary)
    print(
        json.dumps(
            {
                "command": " ".join([Path(sys.executable).name, *sys.argv]),
                "cpu_count": os.cpu_count(),
                "seconds": round(time.monotonic() - start, 1),
                "jobs": results,
                "total": {
                    "kills": sum(r["kills"] for r in results.values()),
                    "corruptions": sum(r["corruptions"] for r in results.values()),
                    "persons_masks_lost": sum(r["persons_masks_lost"] for r in results.values()),
                },
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
