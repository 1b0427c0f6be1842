"""Catalog commands on catalogs of 20, 200 and 2,000 entries, against libyaml alone.

    python bench/catalog.py [--sizes 20,200,2000] [--repeat N] [--timeout S]
    PYTHONPATH=/path/to/other/checkout python bench/catalog.py   # time another version

For each size, builds in a temporary folder a project (``dvc.yaml``, ``catalog/``) whose
entries are the shipped ones followed by copies of them under new names: every other copy
keeps its original's download links (so lint has shared URLs to group, as a lab's subsets of
one dataset do), the others get links of their own. ``.vcat/settings.yaml`` remembers a root
for every entry. Then it times, each as a fresh ``vcat`` process run in the project:

- ``catalog list``, ``catalog lint``, ``status`` (every entry, every root remembered) and
  ``status NAME`` (one entry), first with no parse cache (``cold``), then with the cache
  the first runs left in ``.vcat/cache`` (``warm``); ``list`` and ``status`` also with
  ``--json``, which leaves out drawing the table (Rich's table layout costs about as much
  per row as loading an entry);
- the reference: a Python process that reads every entry file and parses it with
  ``yaml.load(..., Loader=yaml.CSafeLoader)`` and nothing else.

Columns: CPU seconds (user + system) of the whole command, CPU milliseconds per catalog
entry, the ratio to the reference's CPU time on the same files (target at 2,000 entries:
within 3x), and wall seconds. CPU time is the figure to compare: on a machine that others
share, the wall time of the same run varies twofold. Each figure is the run of --repeat that
took least CPU time. ``status NAME`` reads one
entry, so its time should not grow with the catalog; its per-entry figure is shown for
comparison only. A command that runs past --timeout is shown as such, not waited for.
The time of ``vcat --help`` (the fixed start-up cost every command pays) is printed too.
Output goes to a pipe without ``$COLUMNS``, so tables are drawn as wide as their lines; in
a terminal narrower than them, Rich folds the cells, which costs more per row.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "catalog"
#: ``vcat`` run from source, so that ``PYTHONPATH=<checkout>`` times another version of it.
VCAT = [sys.executable, "-c", "import sys; from vcat.cli import main; sys.argv[0] = 'vcat'; main()"]
_URL = re.compile(r"^(\s*(?:-\s+)?url:\s+)(https?://[^/\s]+)(\S*)$", re.MULTILINE)

REFERENCE = """
import sys, yaml
for path in open(sys.argv[1]).read().split("\\n"):
    with open(path, "rb") as stream:
        yaml.load(stream, Loader=yaml.CSafeLoader)
"""


@dataclass(frozen=True)
class Project:
    root: Path
    files: list[Path]
    names: list[str]


def shipped_entries() -> list[Path]:
    return sorted(SHIPPED.glob("datasets/*.yaml")) + sorted(SHIPPED.glob("models/*.yaml"))


def make_project(root: Path, size: int) -> Project:
    """A project of ``size`` entries: the shipped ones first, then renamed copies."""
    originals = shipped_entries()
    (root / "catalog" / "datasets").mkdir(parents=True)
    (root / "catalog" / "models").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    files: list[Path] = []
    names: list[str] = []
    for index in range(size):
        original = originals[index % len(originals)]
        copy = index // len(originals)
        text = original.read_text(encoding="utf-8")
        name = original.stem if copy == 0 else f"{original.stem}-c{copy:04d}"
        if copy % 2 == 1:  # a link of its own; even copies share their original's links
            text = _URL.sub(lambda m, c=copy: f"{m[1]}{m[2]}/copy-{c}{m[3]}", text)
        text = re.sub(r"^title: (.*)$", rf"title: \1 (copy {copy})", text, count=1, flags=re.M)
        path = root / "catalog" / original.parent.name / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        files.append(path)
        names.append(name)
    settings = root / ".vcat" / "settings.yaml"
    settings.parent.mkdir()
    roots = "".join(f"  {name}: {root / 'roots' / name}\n" for name in sorted(names))
    settings.write_text("roots:\n" + roots, encoding="utf-8")
    return Project(root, files, names)


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds
    cpu: float  # user + system seconds of the process


def timed(
    command: list[str], cwd: Path, timeout: float, repeat: int, codes: tuple[int, ...] = (0,)
) -> Timing | None:
    """The run (of ``repeat``) that took least CPU time; None when one exceeds ``timeout``.

    Stops the benchmark when a run exits with a code outside ``codes`` or prints a traceback.
    """
    # as through a pipe: no $COLUMNS, so tables are as wide as their lines
    env = {k: v for k, v in os.environ.items() if not k.startswith("VCAT_") and k != "COLUMNS"}
    best: Timing | None = None
    for _ in range(repeat):
        with tempfile.TemporaryFile() as errors:
            start = time.perf_counter()
            process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=errors
            )
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - start > timeout:
                    process.kill()
                    os.wait4(process.pid, 0)
                    return None
                time.sleep(0.01)
            run = Timing(time.perf_counter() - start, usage.ru_utime + usage.ru_stime)
            process.returncode = os.waitstatus_to_exitcode(status)
            errors.seek(0)
            stderr = errors.read()
        if process.returncode not in codes or b"Traceback" in stderr:
            tail = stderr.decode(errors="replace")[-2000:]
            raise SystemExit(f"{' '.join(command)} exited {process.returncode}:\n{tail}")
        if best is None or run.cpu < best.cpu:
            best = run
    return best


def row(label: str, size: int, run: Timing | None, reference: Timing, timeout: float) -> None:
    if run is None:
        print(f"  {label:<28} > {timeout:7.1f} s wall (timed out)")
        return
    per_entry = run.cpu / size * 1000
    print(
        f"  {label:<28} {run.cpu:8.2f} s {per_entry:8.3f} ms/entry {run.cpu / reference.cpu:7.2f}x"
        f" {run.wall:8.2f} s"
    )


def bench_size(size: int, repeat: int, timeout: float, states: tuple[str, ...]) -> None:
    with tempfile.TemporaryDirectory(prefix="vcat-bench-catalog-") as folder:
        project = make_project(Path(folder) / "project", size)
        listing = Path(folder) / "files.txt"
        listing.write_text("\n".join(str(p) for p in project.files))
        reference = timed(
            [sys.executable, "-c", REFERENCE, str(listing)], project.root, timeout, repeat
        )
        assert reference is not None, "the reference itself timed out"
        print(f"\n{size:,} entries ({sum(p.stat().st_size for p in project.files):,} bytes)")
        row("CSafeLoader alone", size, reference, reference, timeout)
        one = project.names[len(project.names) // 2]
        commands = {
            "catalog list": ["catalog", "list"],
            "catalog list --json": ["catalog", "list", "--json"],
            "catalog lint": ["catalog", "lint"],
            "status": ["status"],
            "status --json": ["status", "--json"],
            "status NAME": ["status", one],
        }
        cache = project.root / ".vcat" / "cache"
        for state in states:
            for label, args in commands.items():
                if state == "cold":
                    shutil.rmtree(cache, ignore_errors=True)
                runs = 1 if state == "cold" else repeat
                codes = (0, 1) if args[-1] == "lint" else (0,)
                seconds = timed([*VCAT, *args], project.root, timeout, runs, codes)
                row(f"{label} ({state})", size, seconds, reference, timeout)
            if state == "cold":  # leave a complete cache for the warm runs
                timed([*VCAT, "catalog", "list"], project.root, timeout, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="20,200,2000", help="comma-separated entry counts")
    parser.add_argument("--repeat", type=int, default=2, help="best of N runs (warm, reference)")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds per command")
    parser.add_argument(
        "--cold-only", action="store_true", help="skip the warm runs (a version with no cache)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as empty:
        startup = timed([*VCAT, "--help"], Path(empty), args.timeout, args.repeat)
    assert startup is not None
    print(f"vcat --help: {startup.cpu:.2f} s CPU (the start-up every command pays)")
    print("  command                       CPU time     per entry   vs CSafeLoader     wall")
    for size in (int(s) for s in args.sizes.split(",")):
        states = ("cold",) if args.cold_only else ("cold", "warm")
        bench_size(size, args.repeat, args.timeout, states)


if __name__ == "__main__":
    main()
