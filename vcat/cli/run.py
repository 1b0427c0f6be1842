"""`vcat run`, `vcat train`, `vcat eval`: the training and evaluation steps with their gates.

Each reproduces its DVC stages (:mod:`vcat.runner`), stops at the first failing stage and,
when that stage is a gate, points at its report. After a run that reached the evaluations,
the headline metrics are printed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vcat.console import fail, stderr, stdout
from vcat.problems import display_path

DeviceOption = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="auto, cpu or cuda for every training and evaluation stage of this run "
        "(default: each stage's device param). Not a param: the lock stays current.",
        show_default=False,
    ),
]
DryOption = Annotated[
    bool, typer.Option("--dry", help="Print the commands DVC would run; run none.")
]
EVAL_METRICS = Path("metrics/eval")
METHOD_ORDER = {"vop": 0, "untrained": 1, "cls": 2}  # the model first, then its baselines


def run(device: DeviceOption = None, dry: DryOption = False) -> None:
    """Run gate -> pretrain -> gate -> features -> gate -> train -> gate -> evaluate -> gate
    for the current params, as `dvc repro` would; stop at the first failing gate."""
    _run_step("all", device, dry)


def train(device: DeviceOption = None, dry: DryOption = False) -> None:
    """Pre-train the backbones, extract their features and train the heads, with the gates
    on their inputs and outputs (what they depend on runs first when stale)."""
    _run_step("train", device, dry)


def evaluate(device: DeviceOption = None, dry: DryOption = False) -> None:
    """Run the evaluations and their gates (what they depend on runs first when stale)."""
    _run_step("eval", device, dry)


def _run_step(step: str, device: str | None, dry: bool) -> None:
    from vcat.project import ProjectNotFound, find_project_root
    from vcat.runner import RunError, gate_folder_of, run_step

    try:
        root = find_project_root()
        outcome = run_step(step, root, device=device, dry=dry)
    except (ProjectNotFound, RunError) as exc:
        fail(str(exc))
    if outcome.failed_stage is not None:
        if outcome.failed_gate:
            folder = gate_folder_of(root, outcome.failed_stage)
            where = ""
            if folder is not None:
                where = f"; report: {display_path(folder)}/ (result.json, bad-items.tsv, docs/)"
            fail(f"stopped at gate {outcome.failed_stage}{where}", code=1)
        fail(f"stopped at stage {outcome.failed_stage}: {outcome.message}", code=1)
    if dry:
        return
    stderr.print(f"{step}: its {len(outcome.targets)} stages and gates are up to date")
    table = headline_table(root / EVAL_METRICS)
    if table is not None:
        stdout.print(table)


def headline_table(folder: Path) -> Table | None:
    """The headline metrics of the evaluations under ``folder`` (None when there are none):
    per overlap run and method, recall@1, mAP and pose AUC; per copy-detection run, micro-AP."""
    rows: list[tuple[str, str, str]] = []
    for path in sorted((folder / "overlap").glob("*.json")):
        values = json.loads(path.read_text(encoding="utf-8"))
        retrieval = values.get("retrieval", {})
        for method in sorted(retrieval, key=lambda name: (METHOD_ORDER.get(name, 9), name)):
            found = retrieval[method]
            pose = {key: float("nan") for key in ("auc@5", "auc@10", "auc@20")}
            pose.update(values.get("pose", {}).get(method, {}))
            rows.append(
                (
                    f"overlap {path.stem}",
                    method,
                    f"R@1 {found['recall@1']:.3f}  mAP {found['mAP']:.3f}  "
                    f"pose AUC@5/10/20 {pose['auc@5']:.3f}/{pose['auc@10']:.3f}/"
                    f"{pose['auc@20']:.3f}",
                )
            )
    for path in sorted((folder / "copydetect").glob("*.json")):
        values = json.loads(path.read_text(encoding="utf-8"))
        for method, found in _copydetect_methods(values).items():
            rows.append(
                (
                    f"copy detection {path.stem}",
                    method,
                    f"micro-AP {found['micro_ap']:.3f}  R@1 {found['recall_at_1']:.3f}",
                )
            )
    if not rows:
        return None
    table = Table(title="Headline metrics", title_justify="left")
    for column in ("evaluation", "method", "metrics"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    return table


def _copydetect_methods(values: dict) -> dict[str, dict]:
    """The copy-detection metrics per method: the backbone's at the top level, its reference
    (``baseline``, e.g. the same network untrained) beside it."""
    methods = {}
    if "micro_ap" in values:
        methods[str(values.get("model", "backbone"))] = values
    baseline = values.get("baseline")
    if isinstance(baseline, dict) and "micro_ap" in baseline:
        methods[str(baseline.get("kind", "baseline"))] = baseline
    return methods
