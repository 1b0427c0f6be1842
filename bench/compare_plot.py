"""Time `vcat compare --plot` on a synthetic comparison: 66 metrics over 3 revisions.

Prints the seconds to draw and write the PNG (median of several runs) and, with
``--against FILE``, the same for ``plot_metrics`` of another version of vcat/compare.py (for
example ``git show HEAD~1:vcat/compare.py > /tmp/old.py``), measured in the same run.

    python bench/compare_plot.py [--metrics 66] [--runs 3] [--against /tmp/old.py]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vcat import compare


def synthetic(module: Any, metrics: int) -> Any:
    """A comparison whose every metric changes across three revisions, as a sweep would."""
    revisions = [
        module.Revision("HEAD~2", "a" * 40, ("v1.0",)),
        module.Revision("HEAD~1", "b" * 40),
        module.Revision("workspace", None),
    ]
    rows = [
        module.Row(
            "metric",
            "metrics/stats.json",
            f"per_class.class_{index:02d}.precision_at_10",
            (0.5 + index / 200, 0.52 + index / 190, 0.51 + index / 210),
        )
        for index in range(metrics)
    ]
    return module.Comparison(revisions, metrics=rows)


def timed(plot: Callable[[Any, Path], int], comparison: Any, runs: int) -> float:
    seconds = []
    with tempfile.TemporaryDirectory() as folder:
        for run in range(runs):
            started = time.perf_counter()
            plot(comparison, Path(folder) / f"plot{run}.png")
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("compare_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--metrics", type=int, default=66)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--against", type=Path, help="another vcat/compare.py to time too")
    args = parser.parse_args()
    # the first figure pays for matplotlib's imports and font cache: not part of the figures
    compare.plot_metrics(synthetic(compare, 2), Path(tempfile.mkdtemp()) / "warm.png")
    this = timed(compare.plot_metrics, synthetic(compare, args.metrics), args.runs)
    print(f"plot of {args.metrics} metrics: {this:.2f} s (median of {args.runs})")
    if args.against is not None:
        other = load(args.against)
        before = timed(other.plot_metrics, synthetic(other, args.metrics), args.runs)
        print(f"  {args.against}: {before:.2f} s; this version is {before / this:.1f}x faster")


if __name__ == "__main__":
    main()
