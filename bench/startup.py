"""Start-up time of `vcat` commands against `dvc --version`, measured in the same run.

Runs each command several times, round robin so that load on the machine falls on all of
them alike, and prints the median wall time of each and its ratio to `dvc --version` (the
reference: a CLI of the same stack that does nothing). Target: `vcat --help` within 1.5x.

    python bench/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
REFERENCE = "dvc --version"
TARGET = 1.5
COMMANDS = {
    REFERENCE: [str(BIN / "dvc"), "--version"],
    "vcat --help": [str(BIN / "vcat"), "--help"],
    "vcat catalog list": [str(BIN / "vcat"), "catalog", "list"],
    "vcat status": [str(BIN / "vcat"), "status"],
}


def once(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, capture_output=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode(errors='replace')}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    for argv in COMMANDS.values():  # warm the file cache and the bytecode
        once(argv)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.runs):
        for name, argv in COMMANDS.items():
            times[name].append(once(argv))
    reference = statistics.median(times[REFERENCE])
    print(f"median of {args.runs} runs each, in {REPO}")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        print(f"  {name:<20} {median:6.3f} s  {median / reference:4.2f}x {REFERENCE}")
    ratio = statistics.median(times["vcat --help"]) / reference
    verdict = "meets" if ratio <= TARGET else "misses"
    print(f"vcat --help is {ratio:.2f}x {REFERENCE}: {verdict} the target of {TARGET}x")


if __name__ == "__main__":
    main()
