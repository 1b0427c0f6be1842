"""`vcat run`, `vcat train`, `vcat eval` on a real DVC project whose stages stand in for the
pipeline's groups (scripts that write files), and on the demo chain (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vcat.cli import app
from vcat.devices import DEVICE_ENV
from vcat.runner import RunError, run_step

runner = CliRunner()
# each stage writes its output and the device it saw; a gate fails when its flag file exists
STEP_PY = """\
import os, pathlib, sys
out, *needs = sys.argv[1:]
for need in needs:
    assert pathlib.Path(need).exists(), need
if out.endswith(".gate") and pathlib.Path(out + ".fail").exists():
    print("gate failed: the flag file says so", file=sys.stderr)
    sys.exit(1)
pathlib.Path(out).parent.mkdir(parents=True, exist_ok=True)
pathlib.Path(out).write_text(os.environ.get("VCAT_DEVICE", "-"))
"""
# stage -> (output, inputs); names follow the pipeline's groups
STAGES = {
    "gate@pairs": ("data/pairs.gate", ["data/pairs"]),
    "pretrain@m": ("models/m", ["data/pairs", "data/pairs.gate"]),
    "model-gate@m": ("models/m.gate", ["models/m"]),
    "features@m": ("data/features", ["models/m", "models/m.gate"]),
    "result-gate@features": ("data/features.gate", ["data/features"]),
    "train-overlap@h": ("models/h", ["data/features", "data/features.gate"]),
    "model-gate@h": ("models/h.gate", ["models/h"]),
    "evaluate-overlap@h": ("metrics/eval/overlap/h.json", ["models/h", "models/h.gate"]),
    "result-gate@eval": ("metrics/eval/overlap/h.json.gate", ["metrics/eval/overlap/h.json"]),
    "unrelated@x": ("data/unrelated", ["data/pairs"]),
}


def _dvc_yaml() -> str:
    """Each group a foreach over its items; a stage depends on up to two files (the second
    defaults to a plain file no stage writes)."""
    groups: dict[str, dict] = {}
    for address, (out, needs) in STAGES.items():
        group, _, item = address.partition("@")
        first, second = [*needs, "data/plain"][:2]
        do = {
            "cmd": f"{sys.executable} step.py ${{item.out}} ${{item.first}} ${{item.second}}",
            "deps": ["step.py", "${item.first}", "${item.second}"],
            "outs": [{"${item.out}": {"cache": False}}],
        }
        groups.setdefault(group, {"foreach": {}, "do": do})
        groups[group]["foreach"][item] = {"out": out, "first": first, "second": second}
    return yaml.safe_dump({"stages": groups}, sort_keys=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git + DVC project with the stages of STAGES, made the working directory."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "catalog").mkdir()
    (tmp_path / "step.py").write_text(STEP_PY)
    (tmp_path / "data").mkdir()
    (tmp_path / "data/pairs").write_text("pairs")
    (tmp_path / "data/plain").write_text("plain")
    (tmp_path / "dvc.yaml").write_text(_dvc_yaml())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    return tmp_path


def outputs(root: Path) -> dict[str, str]:
    """Each stage output that exists -> the device its stage saw."""
    return {out: (root / out).read_text() for out, _ in STAGES.values() if (root / out).is_file()}


def test_run_reproduces_every_step_and_its_gates_in_order(project: Path) -> None:
    outcome = run_step("all", project, device="cpu")
    assert outcome.failed_stage is None
    assert set(outcome.targets) == set(STAGES) - {"gate@pairs", "unrelated@x"}
    made = outputs(project)
    assert set(made) == {out for address, (out, _) in STAGES.items() if address != "unrelated@x"}
    assert set(made.values()) == {"cpu"}  # VCAT_DEVICE reached every stage
    assert DEVICE_ENV not in os.environ
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "--json", *outcome.targets],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(status.stdout) == {}  # the lock agrees: dvc repro has nothing to do


def test_train_and_eval_choose_their_groups(project: Path) -> None:
    train = run_step("train", project, dry=True)
    assert set(train.targets) == {
        "pretrain@m",
        "model-gate@m",
        "features@m",
        "result-gate@features",
        "train-overlap@h",
        "model-gate@h",
    }
    assert outputs(project) == {}  # a dry run runs nothing
    evaluation = run_step("eval", project)
    assert set(evaluation.targets) == {"evaluate-overlap@h", "result-gate@eval"}
    assert "metrics/eval/overlap/h.json.gate" in outputs(project)  # upstream ran first


def test_a_failing_gate_stops_the_run_before_what_reads_it(project: Path) -> None:
    (project / "models").mkdir()
    (project / "models/m.gate.fail").write_text("")
    result = runner.invoke(app, ["run", "--device", "cpu"])
    assert result.exit_code == 1
    assert "stopped at gate model-gate@m" in result.output
    made = outputs(project)
    assert "models/m" in made and "data/features" not in made and "models/h" not in made


def test_a_failing_gate_names_its_report_folder(project: Path) -> None:
    (project / "params.yaml").write_text(
        "model_gates:\n  m:\n    artifact: models/m\n    kind: checkpoint\n"
    )
    (project / "models").mkdir()
    (project / "models/m.gate.fail").write_text("")
    result = runner.invoke(app, ["train"])
    assert result.exit_code == 1
    assert "stopped at gate model-gate@m; report: models/m.gate/" in result.output


def test_unknown_step_device_and_project_are_refused(
    project: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RunError, match="no step 'fit'"):
        run_step("fit", project)
    result = runner.invoke(app, ["run", "--device", "tpu"])
    assert result.exit_code == 2 and "device 'tpu': use one of auto, cpu, cuda" in result.output
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    result = runner.invoke(app, ["eval"])
    assert result.exit_code == 2 and "no vcat project" in result.output


@pytest.mark.parametrize("name", ["params.yaml", "dvc.yaml", "dvc.lock"])
def test_a_broken_yaml_file_is_named_with_its_line(project: Path, name: str) -> None:
    run_step("train", project, device="cpu")  # so that dvc.lock exists
    path = project / name
    before = path.read_text() if path.exists() else ""  # no params.yaml yet: DVC reads one
    path.write_text(before + "extra: [not closed\n")
    lines = len(path.read_text().splitlines())
    with pytest.raises(RunError) as refused:
        run_step("all", project)
    message = str(refused.value)
    assert message.startswith(f"{path}, line {lines + 1}, column 1: ")
    assert message.endswith("fix the YAML there and run again")
    result = runner.invoke(app, ["eval"])
    assert result.exit_code == 2 and f"{name}, line {lines + 1}" in result.output


def vcat(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed `vcat` in ``project``, as a user runs it."""
    bin_dir = Path(sys.executable).parent  # the stages run `vcat stage`: it must be on PATH
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return subprocess.run(
        [str(bin_dir / "vcat"), *args], cwd=project, env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_demo_chain_stops_at_a_failing_gate_and_a_param_change_shows_in_compare(
    demo_trained_root: Path, tmp_path: Path
) -> None:
    from tests.demo_artifacts import copy_project

    project = copy_project(demo_trained_root, tmp_path / "project")
    lock = (project / "dvc.lock").read_bytes()
    done = vcat(project, "run", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert "Headline metrics" in done.stdout and "R@1 0." in done.stdout
    assert (project / "dvc.lock").read_bytes() == lock  # built by `vcat run`: nothing to do

    evaluation = project / "metrics/eval/overlap/vop-overlap-head-demo.json"
    before = evaluation.read_bytes()
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["model_gates"]["train-overlap-demo"]["checks"]["weights_bounded"] = {"max": 1.0e-3}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    done = vcat(project, "eval")
    assert done.returncode == 1
    assert (
        "stopped at gate model-gate@train-overlap-demo; report: "
        "models/vop-overlap-head-demo/checkpoint.pt.gate/" in done.stderr
    )
    assert evaluation.read_bytes() == before  # the evaluation did not run

    subprocess.run(["git", "checkout", "params.yaml"], cwd=project, check=True)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["evaluate-overlap"]["pose"]["top_k"] = 3
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    done = vcat(project, "eval", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    compared = vcat(project, "compare", "HEAD", "workspace", "--json")
    assert compared.returncode == 0, compared.stderr
    document = json.loads(compared.stdout)
    params_rows = {row["key"]: row for row in document["params"] if row["changed"]}
    assert params_rows["evaluate-overlap.pose.top_k"]["values"] == [5, 3]
    metric_rows = {
        row["key"]: row
        for row in document["metrics"]
        if row["file"] == "metrics/eval/overlap/vop-overlap-head-demo.json"
    }
    assert metric_rows["pose.vop.pairs"]["values"] == [240, 144]
    assert metric_rows["retrieval.vop.mAP"]["changed"] is False  # retrieval does not use top_k


def test_headline_table_lists_each_method_model_first(tmp_path: Path) -> None:
    from rich.console import Console

    from vcat.cli.run import headline_table

    assert headline_table(tmp_path) is None  # no evaluation yet: nothing printed
    (tmp_path / "overlap").mkdir()
    (tmp_path / "copydetect").mkdir()
    retrieval = {"recall@1": 0.5, "mAP": 0.25}
    (tmp_path / "overlap/head.json").write_text(
        json.dumps(
            {
                "retrieval": {"cls": retrieval, "vop": {"recall@1": 0.75, "mAP": 0.625}},
                "pose": {"vop": {"auc@5": 0.1, "auc@10": 0.2, "auc@20": 0.3}},
            }
        )
    )
    (tmp_path / "copydetect/set.json").write_text(
        json.dumps(
            {
                "model": "net",
                "micro_ap": 0.5,
                "recall_at_1": 0.75,
                "baseline": {"kind": "untrained", "micro_ap": 0.125, "recall_at_1": 0.25},
            }
        )
    )
    table = headline_table(tmp_path)
    console = Console(width=200, record=True)
    console.print(table)
    lines = [line for line in console.export_text().splitlines() if "│" in line]
    assert [line.split("│")[2].strip() for line in lines] == ["vop", "cls", "net", "untrained"]
    assert "R@1 0.750  mAP 0.625  pose AUC@5/10/20 0.100/0.200/0.300" in lines[0]
    assert "pose AUC@5/10/20 nan/nan/nan" in lines[1]  # no pose for this method
    assert "micro-AP 0.500  R@1 0.750" in lines[2] and "micro-AP 0.125" in lines[3]


def test_dvc_logging_left_on_a_closed_stream_does_not_fail_the_run(project: Path) -> None:
    """An earlier in-process DVC call may have bound DVC's log handlers to streams closed
    since (pytest's captures do this); the run binds them to the current ones."""
    import io

    from dvc.logger import setup

    gone = io.StringIO()
    with pytest.MonkeyPatch.context() as streams:
        streams.setattr(sys, "stdout", gone)
        streams.setattr(sys, "stderr", gone)
        setup()
    gone.close()
    assert run_step("train", project).failed_stage is None
